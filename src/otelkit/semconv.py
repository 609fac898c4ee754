"""Every attribute, metric and operation name otelkit reads or writes.

OpenTelemetry semantic conventions come first (GenAI, error, session, code); the
``otelkit.`` namespace covers only what no convention does. Nothing else in the code base
spells these strings, so a rename happens here and nowhere else.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class OperationType(str, Enum):
    """What kind of work a span represents; stored in ``otelkit.operation.type``."""

    COMMAND = "command"
    STEP = "step"
    TEMPLATE = "template"
    CONDITION = "condition"
    LLM = "llm"
    TOOL = "tool"
    AGENT = "agent"
    FUNCTION = "function"


# --- OpenTelemetry GenAI conventions -------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # older name for the provider, still emitted by some
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
# the same count under the name opentelemetry-util-genai and the Anthropic SDK's own spans use
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"

GEN_AI_OP_CHAT: Final = "chat"
GEN_AI_OP_EMBEDDINGS: Final = "embeddings"
GEN_AI_OP_EXECUTE_TOOL: Final = "execute_tool"
GEN_AI_OP_INVOKE_AGENT: Final = "invoke_agent"

# gen_ai.operation.name values and the otelkit operation type they denote, so spans from
# other GenAI instrumentors land in the same report rows as ours.
GEN_AI_OPERATION_TYPES: Final[dict[str, OperationType]] = {
    "chat": OperationType.LLM,
    "text_completion": OperationType.LLM,
    "generate_content": OperationType.LLM,
    "embeddings": OperationType.LLM,
    "execute_tool": OperationType.TOOL,
    "invoke_agent": OperationType.AGENT,
    "create_agent": OperationType.AGENT,
}

# --- General conventions -------------------------------------------------------------------
ERROR_TYPE: Final = "error.type"
SESSION_ID: Final = "session.id"
SERVICE_NAME: Final = "service.name"
CODE_FUNCTION_NAME: Final = "code.function.name"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_TYPE: Final = "exception.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
PROCESS_EXECUTABLE_NAME: Final = "process.executable.name"
PROCESS_EXIT_CODE: Final = "process.exit.code"
PROCESS_COMMAND_ARGS: Final = "process.command_args"

# --- otelkit namespace ---------------------------------------------------------------------
OPERATION_TYPE: Final = "otelkit.operation.type"
COMMAND_NAME: Final = "otelkit.command.name"
STEP_TYPE: Final = "otelkit.step.type"
STEP_ID: Final = "otelkit.step.id"
TEMPLATE_NAME: Final = "otelkit.template.name"
TEMPLATE_CACHE_HIT: Final = "otelkit.template.cache_hit"
TEMPLATE_PHASE: Final = "otelkit.template.phase"
TEMPLATE_OUTPUT_SIZE: Final = "otelkit.template.output.size"
COMMAND_PATH: Final = "otelkit.command.path"
COMMAND_PARAMETERS: Final = "otelkit.command.parameters"
COMMAND_PARAMETER_PREFIX: Final = "otelkit.command.parameter."
TOKENS_ESTIMATED_BY: Final = "otelkit.tokens.estimated_by"
LLM_REQUESTED_TOOLS: Final = "otelkit.llm.requested_tools"
CONDITION_EXPRESSION: Final = "otelkit.condition.expression"
CONDITION_RESULT: Final = "otelkit.condition.result"
CONDITION_BRANCH: Final = "otelkit.condition.branch"
COST_STATUS: Final = "otelkit.cost.status"
ERROR_CATEGORY: Final = "otelkit.error.category"
PERFORMANCE_CATEGORY: Final = "otelkit.performance.category"
SAMPLE_RATE: Final = "otelkit.sample.rate"
SANITIZE_REDACTED: Final = "otelkit.sanitize.redacted"  # how many values were scrubbed
SANITIZE_RULES: Final = "otelkit.sanitize.rules"  # which rules scrubbed them (names, never values)
PROCESS_MEMORY_RSS: Final = "otelkit.process.memory.rss"  # bytes, at the end of a command or step


class CostStatus(str, Enum):
    """How a span's ``gen_ai.usage.cost`` was obtained: never a silent zero."""

    PRICED = "priced"
    ESTIMATED = "estimated"
    UNPRICED = "unpriced"


# --- Metric names and their attributes ----------------------------------------------------
METRIC_OPERATION_DURATION: Final = "otelkit.operation.duration"
METRIC_GEN_AI_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_GEN_AI_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_GEN_AI_COST: Final = "otelkit.gen_ai.cost"
METRIC_GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
OPERATION_NAME: Final = "otelkit.operation.name"
OPERATION_OUTCOME: Final = "otelkit.operation.outcome"
OUTCOME_SUCCESS: Final = "success"
OUTCOME_ERROR: Final = "error"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- Log record fields (stdlib LogRecord attributes and structlog event keys) -------------
LOG_TRACE_ID: Final = "trace_id"
LOG_SPAN_ID: Final = "span_id"
LOG_SESSION_ID: Final = "session_id"
LOG_CORRELATION_FIELDS: Final = (LOG_TRACE_ID, LOG_SPAN_ID, LOG_SESSION_ID)

# --- Baggage keys -------------------------------------------------------------------------
BAGGAGE_SESSION_ID: Final = SESSION_ID

INSTRUMENTATION_SCOPE: Final = "otelkit"


def operation_type_of(attributes: "dict[str, object] | None") -> str | None:
    """The otelkit operation type a span's attributes denote, or None for plain spans."""
    if not attributes:
        return None
    declared = attributes.get(OPERATION_TYPE)
    if isinstance(declared, str):
        return declared
    gen_ai_op = attributes.get(GEN_AI_OPERATION_NAME)
    if isinstance(gen_ai_op, str):
        mapped = GEN_AI_OPERATION_TYPES.get(gen_ai_op)
        return mapped.value if mapped else None
    return None

# --- sanitize
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

# --- sampling ------------------------------------------------------------------------------
# The OpenTelemetry entry of the W3C tracestate: the consistent-sampling threshold (th) and
# randomness (rv). SAMPLE_RATE above is the span's adjusted count, 1 / its probability of
# having been kept (10.0 for 10%; 1.0 when nothing was sampled away): the report's weight.
TRACESTATE_OT: Final = "ot"
