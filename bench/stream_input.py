"""Speech that starts while an LLM is still writing: a reply sent word by word at 20 words/s (a fast
LLM) into the ElevenLabs input stream (`/v1/text-to-speech/{voice}/stream-input`) of the embedded
server (Piper), against each sentence sent alone.

- first: from the word that completes the first sentence to the reply's first audio, against the
  first sentence sent alone (whole, then the end of the stream) to its first audio;
- last: from the reply's last word (and the end of the stream) to its last audio, against the last
  sentence sent alone to its last audio (its own synthesis).
The target is 1.2x for both. Runs alternate (alone, streamed) so that both see the same machine.

    .venv/bin/python -m bench.stream_input [--runs 10] [--sentences 4] [--words-per-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from websockets.asyncio.client import connect

from bench.harness import SENTENCES, VOICE, embedded_server
from bench.report import save

PORT = 7931


async def _spoken(url: str, pieces: list[str], every_s: float) -> tuple[float, float, list[float]]:
    """Sends `pieces` `every_s` apart, then the end; (first audio, last audio, each piece's send
    time), on one clock."""
    async with connect(f"{url}/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_22050") as socket:
        sent: list[float] = []

        async def send() -> None:
            for piece in pieces:
                await socket.send(json.dumps({"text": piece}))
                sent.append(time.perf_counter())
                await asyncio.sleep(every_s)
            await socket.send(json.dumps({"text": ""}))

        sending = asyncio.create_task(send())
        first = last = None
        async for raw in socket:
            message = json.loads(raw)
            if message.get("audio"):
                first = first or time.perf_counter()
                last = time.perf_counter()
            if message.get("isFinal") or message.get("error"):
                break
        await sending
        if first is None or last is None:
            raise RuntimeError(f"no audio: {message}")
        return first, last, sent


async def measure(url: str, runs: int, sentences: int, words_per_s: float) -> dict[str, list[float]]:
    reply = SENTENCES[:sentences]
    words = [word + " " for word in " ".join(reply).split(" ")]
    first_done = len(reply[0].split(" ")) - 1  # the index of the word that completes the first sentence
    found: dict[str, list[float]] = {"first_alone": [], "first_streamed": [], "last_alone": [], "last_streamed": []}
    await _spoken(url, [reply[0] + " "], 0)  # warm up
    for _ in range(runs):
        first_audio, _, sent = await _spoken(url, [reply[0] + " "], 0)
        found["first_alone"].append(first_audio - sent[0])
        _, last_audio, sent = await _spoken(url, [reply[-1] + " "], 0)
        found["last_alone"].append(last_audio - sent[0])
        first_audio, last_audio, sent = await _spoken(url, words, 1 / words_per_s)
        found["first_streamed"].append(first_audio - sent[first_done])
        found["last_streamed"].append(last_audio - sent[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--words-per-s", type=float, default=20.0)
    args = parser.parse_args()
    with embedded_server(PORT):
        found = asyncio.run(measure(f"ws://127.0.0.1:{PORT}", args.runs, args.sentences, args.words_per_s))
    median = {name: statistics.median(values) * 1000 for name, values in found.items()}
    ratios = {part: median[f"{part}_streamed"] / median[f"{part}_alone"] for part in ("first", "last")}
    table = "\n".join([
        f"Piper, embedded server, {args.sentences} sentences at {args.words_per_s:g} words/s, {args.runs} runs "
        "(medians)", "",
        "| | sentence alone (ms) | streamed reply (ms) | ratio (target <= 1.2) |", "|---|---|---|---|",
        f"| first audio after the first sentence's last word | {median['first_alone']:.0f} | "
        f"{median['first_streamed']:.0f} | {ratios['first']:.2f} |",
        f"| last audio after the last word | {median['last_alone']:.0f} | {median['last_streamed']:.0f} | "
        f"{ratios['last']:.2f} |"])
    print(table)
    print(save("stream_input", {"args": vars(args), "samples_s": found, "median_ms": median, "ratios": ratios},
               table))


if __name__ == "__main__":
    main()
