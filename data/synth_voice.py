"""espeak-ng voices for the built-in corpus: the voice list, held-out voices, and a reproducible synthesiser.

espeak-ng is GPL-3.0. It is not linked into this project: the shared library and its voice data come from the
``espeakng-loader`` wheel and are loaded at run time through ctypes.

Why a process per utterance: espeak-ng keeps state from one utterance to the next in function-level statics
(the pitch-flutter index, the wave phase, ...) that no API call resets, so the same request gives different
samples, and lengths that differ by up to hundreds of samples, depending on what was spoken before. A helper
process initialises espeak-ng once and forks a child for each request; every child starts from the same
state, so the audio depends on the request alone (a fork costs ~2 ms). Needs ``os.fork`` (Linux, macOS).
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

#: espeak-ng language voices with an English dictionary ("en" is British English).
BASE_VOICES: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
#: Voice variants (files in ``espeak-ng-data/voices/!v``) that stay intelligible: no robots, echoes or whispers.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4",
    "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike", "Nguyen", "adam",
    "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "david", "ed", "edward", "grandma", "grandpa",
    "gustave", "iven", "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "paul", "pedro", "quincy",
    "rob", "robert", "shelby", "steph", "travis", "victor",
)

_HEADER = struct.Struct("<q")  # a reply: sample count, then samples; or minus the length of an error message
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS, _RATE, _PITCH = 2, 1, 3


def split_voices(num_dev: int, num_test: int, seed: int) -> dict[str, list[str]]:
    """Disjoint ``"<base>+<variant>"`` voices for train, dev and test.

    A held-out split of ``n`` voices gets ``ceil(n / 2)`` variants that no other split ever uses (each with a
    random base voice) and ``floor(n / 2)`` base+variant combinations that training never hears, although it
    hears their variant with other base voices. Training gets every other combination of the remaining variants.
    """
    rng = random.Random(f"{seed}:voices")
    variants = list(VARIANTS)
    rng.shuffle(variants)
    own = {"dev": (num_dev + 1) // 2, "test": (num_test + 1) // 2}
    if own["dev"] + own["test"] >= len(variants):
        raise ValueError(f"too many held-out voices ({num_dev} + {num_test}) for {len(variants)} variants")
    held_out = {split: [f"{rng.choice(BASE_VOICES)}+{variants.pop()}" for _ in range(n)] for split, n in own.items()}
    pool = [f"{base}+{variant}" for variant in variants for base in BASE_VOICES]
    rng.shuffle(pool)
    for split, n in (("dev", num_dev), ("test", num_test)):
        held_out[split] += [pool.pop() for _ in range(n - own[split])]
    return {"train": pool, **held_out}


def _check_variants(data_path: str) -> None:
    missing = [v for v in VARIANTS if not (Path(data_path) / "voices" / "!v" / v).is_file()]
    if missing:
        raise RuntimeError(f"espeak-ng data at {data_path} lacks voice variants {missing}")


class _Espeak:
    """The espeak-ng library in this process, initialised once, returning audio through a callback."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        data_path = espeakng_loader.get_data_path()
        _check_variants(data_path)
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}) with data at {data_path}")
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: espeak calls it later
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples: ctypes.Array, num_samples: int, events: int) -> int:
        if num_samples > 0:
            self._chunks.append(ctypes.string_at(samples, 2 * num_samples))
        return 0  # continue synthesis

    def speak(self, voice: str, text: str, rate_wpm: int, pitch: int, seed: int) -> bytes:
        """int16 samples (native byte order) at :attr:`sample_rate`; raises ``RuntimeError`` on failure."""
        self._chunks.clear()
        status = self._lib.espeak_SetVoiceByName(voice.encode())
        for parameter, value in ((_RATE, rate_wpm), (_PITCH, pitch)):
            status = status or self._lib.espeak_SetParameter(parameter, value, 0)
        self._lib.espeak_ng_SetRandSeed(seed)
        encoded = text.encode()
        status = status or self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
        if status:
            raise RuntimeError(f"espeak-ng failed (status {status})")
        return b"".join(self._chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _serve() -> None:
    """Helper process: one JSON request a line on stdin, one reply (header, then samples or message) on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes our stdin
    engine = _Espeak()
    out = sys.stdout.fileno()
    _write_all(out, _HEADER.pack(engine.sample_rate))
    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _speak_and_exit(engine, request, out)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code:  # the child died without replying
            _reply_error(out, f"espeak-ng child process died (exit code {code})")


def _speak_and_exit(engine: _Espeak, request: dict, out: int) -> None:
    """Forked child: reply with the samples or the error, then exit at once (no cleanup of the parent's state)."""
    try:
        samples = engine.speak(**request)
        _write_all(out, _HEADER.pack(len(samples) // 2) + samples)
    except Exception as err:
        _reply_error(out, f"{type(err).__name__}: {err}")
    os._exit(0)


def _reply_error(out: int, message: str) -> None:
    encoded = message.encode()
    _write_all(out, _HEADER.pack(-len(encoded)) + encoded)


class EspeakSynthesizer:
    """English text to speech with espeak-ng, reproducible: the same request always gives the same samples.

    Starts a helper process (see the module docstring); use as a context manager or call :meth:`close`.
    """

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])  # the folder holding the ``data`` package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        #: Output sample rate of espeak-ng in Hz (22050).
        self.sample_rate = self._read_header()

    def synthesize(self, voice: str, text: str, rate_wpm: int, pitch: int, seed: int) -> np.ndarray:
        """Speech as float32 samples in [-1, 1], shape (num_samples,), at :attr:`sample_rate`.

        voice: ``"<base>+<variant>"``, e.g. ``"en-us+f3"``; rate_wpm: words per minute; pitch: 0-100 (50 is
        the voice's own); seed: espeak-ng's random generator (breath noise). Raises ``RuntimeError`` on failure.
        """
        request = {"voice": voice, "text": text, "rate_wpm": rate_wpm, "pitch": pitch, "seed": seed}
        self._send(request)
        return self._receive(request)

    def synthesize_many(self, requests: Iterable[dict[str, Any]]) -> Iterator[np.ndarray]:
        """:meth:`synthesize` of each request (its keyword arguments), in order. The next request is sent before
        the current reply is returned, so the helper works while the caller processes. Abandoning the iterator
        midway closes the synthesiser."""
        in_flight = None
        try:
            for request in requests:
                self._send(request)
                if in_flight is not None:
                    yield self._receive(in_flight)
                in_flight = request
            if in_flight is not None:
                request, in_flight = in_flight, None
                yield self._receive(request)
        finally:
            if in_flight is not None:
                self.close()

    def _send(self, request: dict[str, Any]) -> None:
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()

    def _receive(self, request: dict[str, Any]) -> np.ndarray:
        num_samples = self._read_header()
        if num_samples < 0:
            message = self._read_exactly(-num_samples).decode(errors="replace")
            raise RuntimeError(f"{message} (voice {request['voice']!r}, text {request['text']!r})")
        data = self._read_exactly(2 * num_samples)
        return np.frombuffer(data, dtype=np.int16).astype(np.float32) / 32768.0

    def _read_header(self) -> int:
        return _HEADER.unpack(self._read_exactly(_HEADER.size))[0]

    def _read_exactly(self, num_bytes: int) -> bytes:
        data = self._process.stdout.read(num_bytes)
        if len(data) != num_bytes:
            raise RuntimeError(f"espeak-ng helper process exited (status {self._process.poll()})")
        return data

    def close(self) -> None:
        """Stop the helper process."""
        if not self._process.stdin.closed:
            self._process.stdin.close()
        self._process.wait()
        self._process.stdout.close()

    def __enter__(self) -> "EspeakSynthesizer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


if __name__ == "__main__":
    _serve()
