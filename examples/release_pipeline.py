"""A small release pipeline that exercises every otelkit operation, with no network.

Run it under ``opentelemetry-instrument`` (see the README) and read it back with
``otelkit report``. Each release runs in its own session: a ``release`` command runs steps,
renders release notes from a template, evaluates conditions, calls a docs-search tool and a
fake LLM that "summarizes" the changelog (token counts are word counts). A fixed random seed
makes some tests flaky and some searches fail, so the report has errors to show.
"""

from __future__ import annotations

import argparse
import random
import string
import time

import otelkit
import release_helpers

NOTES = string.Template("Release $version\n\n$summary\n\nArtifacts: $artifacts\n")


@otelkit.tool("search_docs")
def search_docs(query: str, rng: random.Random) -> list[str]:
    """A tool the agent calls; fails now and then like a real one."""
    time.sleep(rng.uniform(0.001, 0.004))
    if rng.random() < 0.2:
        raise TimeoutError(f"docs index did not answer for {query!r}")
    return [f"doc-{len(query)}", f"doc-{len(query) + 1}"]


@otelkit.tool("fetch_changelog")
def fetch_changelog(version: str, rng: random.Random) -> list[str]:
    """A tool that reads what changed since the last release."""
    time.sleep(rng.uniform(0.001, 0.003))
    return [f"fix issue #{rng.randrange(1000)} in module {m}" for m in "abcde"[: rng.randint(2, 5)]]


def summarize(changelog: list[str], rng: random.Random) -> str:
    """A fake LLM call: word counts stand in for tokens, a fixed price stands in for cost."""
    with otelkit.llm("demo-model-small", "demo") as call:
        time.sleep(rng.uniform(0.003, 0.008))
        prompt_tokens = sum(len(line.split()) for line in changelog) + 40
        summary = f"{len(changelog)} changes, mostly fixes."
        output_tokens = len(summary.split())
        call.set_response(model="demo-model-small-2026", response_id=f"resp-{rng.randrange(10**6)}")
        call.record_usage(input_tokens=prompt_tokens, output_tokens=output_tokens,
                          cost_usd=(prompt_tokens * 0.15 + output_tokens * 0.6) / 1e6)
        return summary


@otelkit.command("release")
def release(version: str, rng: random.Random) -> bool:
    """One release: build, test, document, publish if the tests pass."""
    with otelkit.step("checkout", step_id=version):
        time.sleep(0.002)
    with otelkit.step("build", step_id=version):
        artifacts = [f"app-{version}.tar.gz", f"app-{version}.whl"]
        for artifact in artifacts:
            release_helpers.checksum_artifact(artifact, 64)
    with otelkit.step("test", step_id=version):
        time.sleep(rng.uniform(0.005, 0.02))
        passed = rng.random() > 0.25
    with otelkit.condition("tests passed", branches=("publish", "abort")) as gate:
        if not gate.check(passed):
            return False
    with otelkit.agent("release-notes-writer"):
        changelog = fetch_changelog(version, rng)
        for _attempt in range(2):  # one retry when the docs index times out
            try:
                search_docs(f"changes in {version}", rng)
                break
            except TimeoutError:
                continue
        summary = summarize(changelog, rng)
        with otelkit.template("release_notes.txt"):
            NOTES.substitute(version=version, summary=summary, artifacts=", ".join(artifacts))
    with otelkit.step("publish", step_id=version):
        for artifact in artifacts:
            release_helpers.upload_artifact(artifact)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=12, help="how many releases to run")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    published = 0
    for n in range(args.releases):
        with otelkit.session(f"release-session-{n:03d}"):
            published += release(f"1.{n}.0", rng)
    print(f"published {published} of {args.releases} releases")


if __name__ == "__main__":
    main()
