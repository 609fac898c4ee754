"""An agent CLI built on click, jinja2, openai and anthropic, with no otelkit code at all.

Run it under ``opentelemetry-instrument`` and every command, template render and LLM call is
traced, with tokens and cost (see the README). It reads the providers' keys and base URLs from
the environment the way the SDKs do (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``); the test suite points it at local fakes.

    opentelemetry-instrument python examples/agent_cli.py ask "release notes"
"""

from __future__ import annotations

import logging
import sys

import anthropic
import click
import jinja2
import openai

templates = jinja2.Environment(loader=jinja2.DictLoader({"prompt.txt": "Summarize {{ topic }} in one line."}))
log = logging.getLogger("agent")


def user_message(topic: str) -> dict[str, str]:
    """The prompt, rendered from its template (compiled once, then from the environment's cache)."""
    return {"role": "user", "content": templates.get_template("prompt.txt").render(topic=topic)}


@click.group()
def cli() -> None:
    """A small agent CLI."""


@cli.command()
@click.argument("topic")
@click.option("--api-key-hint", default="none")
def ask(topic: str, api_key_hint: str) -> None:
    """Ask two models to summarize a topic (the prompt comes from a template)."""
    chat = openai.OpenAI(max_retries=0)
    answer = chat.chat.completions.create(model="gpt-4o-mini", messages=[user_message(topic)])
    for _ in chat.chat.completions.create(model="gpt-4o", messages=[user_message(topic)], stream=True):
        pass  # a streamed second opinion, read to the end
    claude = anthropic.Anthropic(max_retries=0)
    claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[user_message(topic)])
    log.warning("asked about %s", topic)
    click.echo(answer.choices[0].message.content)


@cli.command()
@click.option("--code", type=int, default=3)
def give_up(code: int) -> None:
    """Exit with a code, as a failing command does."""
    sys.exit(code)


if __name__ == "__main__":
    cli()
