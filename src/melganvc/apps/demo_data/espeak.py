"""espeak-ng through ctypes, in a short-lived worker process (``EspeakProcess``).

espeak-ng is a C library with process-global state that its API cannot fully reset, so each
``generate_voice_demo`` call runs it in its own worker process: the caller's process never
loads it, it is initialised exactly once per worker, concurrent or repeated calls cannot
disturb each other, and the same arguments give the same samples. The worker speaks a line
protocol (a JSON request per stdin line, ``ok <n>`` + n bytes back), served by ``_serve``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

import melganvc
from melganvc.errors import UserError

INSTALL_HINT = "pip install 'melganvc[demo]' (or: pip install 'espeakng-loader>=0.2.4,<0.3')"


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice: variant name, pitch (0-100), pitch range (0-100)."""

    voice: str
    pitch: int
    pitch_range: int


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Espeak:
    """The worker process's one initialised espeak-ng (synchronous mode: audio per call)."""

    def __init__(self, library_path: str, data_path: str, seed: int) -> None:
        lib = ctypes.CDLL(library_path)  # OSError if it cannot load
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # 2 = AUDIO_OUTPUT_SYNCHRONOUS; 0x8000 = INITIALIZE_DONT_EXIT (an error code, not exit())
        self.sample_rate = lib.espeak_Initialize(2, 0, data_path.encode(), 0x8000)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path}")
        # breath noise (the female variants) uses libc rand(), seeded from the clock at init
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak-ng's own generator (>= 1.51)
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: C holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    def _collect(self, wav, n_samples: int, _events) -> int:
        """espeak-ng's synth callback: copy each chunk out before C reuses its buffer."""
        if n_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> bytes:
        """Speak ``text``; int16 little-endian mono at ``self.sample_rate``."""
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice '{voice}'")
        # espeakRATE=1, VOLUME=2, PITCH=3, RANGE=4, PUNCTUATION=5, CAPITALS=6, WORDGAP=7
        for parameter, value in ((1, rate), (2, 100), (3, pitch), (4, pitch_range),
                                 (5, 0), (6, 0), (7, 0)):
            lib.espeak_SetParameter(parameter, value, 0)
        self._chunks = []
        data = text.encode("utf-8")
        # POS_CHARACTER=1, espeakCHARS_UTF8=1
        if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r}")
        lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        return b"".join(chunk.astype("<i2").tobytes() for chunk in chunks)


def _serve(library_path: str, data_path: str, seed: str) -> None:
    """Worker main: a JSON request per stdin line -> ``ok <n>\\n`` + n bytes, or ``error <why>``."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the C library prints goes to stderr, never into the reply stream
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it closes our stdin

    def reply(status: str, payload: bytes = b"") -> None:
        replies.write(status.replace("\n", " ").encode() + b"\n" + payload)
        replies.flush()

    try:
        engine = _Espeak(library_path, data_path, int(seed))
    except (OSError, RuntimeError) as exc:
        return reply(f"error {exc}")
    reply(f"ok {engine.sample_rate}")
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            pcm = engine.synthesize(**request)
        except RuntimeError as exc:
            reply(f"error {exc}")
            continue
        reply(f"ok {len(pcm)}", pcm)


class EspeakProcess:
    """espeak-ng in a child process, one per ``generate_voice_demo`` call (a context manager).

    Why a process: espeak-ng keeps process-global C state that its API cannot reset - not only
    the voice and parameters but the pitch-flutter phase, the gain control and the noise
    generator, which run on from one utterance to the next (re-initialising resets none of them
    and is not supported). So in one process the same text comes out slightly differently each
    time. A fresh worker per call initialises espeak-ng exactly once, never touches the caller's
    process, and (with the C noise generators seeded) makes every call with the same arguments
    write the same samples.
    """

    def __init__(self, seed: int = 0) -> None:
        try:
            import espeakng_loader
            library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        except (ImportError, RuntimeError) as exc:
            raise UserError(f"demo voices need espeakng-loader ({exc}); "
                            f"install it: {INSTALL_HINT}") from None
        if not Path(library).is_file():
            raise UserError(f"espeakng-loader has no library at {library}; "
                            f"reinstall it: {INSTALL_HINT}")
        env = dict(os.environ)  # let the child import this very copy of melganvc
        package_root = str(Path(melganvc.__file__).resolve().parents[1])  # the folder above it
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen([sys.executable, "-c", _WORKER, library, data, str(seed)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.sample_rate = int(self._read_status("did not start"))

    def _read_status(self, failure: str) -> str:
        assert self._process.stdout is not None  # opened with stdout=PIPE
        status, _, payload = self._process.stdout.readline().decode().rstrip("\n").partition(" ")
        if status != "ok":
            self.close()
            reason = payload or f"worker exited with code {self._process.returncode}"
            raise UserError(f"espeak-ng (from espeakng-loader) {failure}: {reason}; "
                            f"reinstall it: {INSTALL_HINT}")
        return payload

    def synthesize(self, text: str, speaker: Speaker, rate: int, pitch: int) -> np.ndarray:
        """Speak ``text`` in ``speaker``'s voice; float32 mono at ``self.sample_rate``."""
        request = {"text": text, "voice": speaker.voice, "rate": rate, "pitch": pitch,
                   "pitch_range": speaker.pitch_range}
        assert self._process.stdin is not None and self._process.stdout is not None  # PIPEs
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()
        n_bytes = int(self._read_status(f"failed on {text!r}"))
        pcm = self._process.stdout.read(n_bytes)
        if len(pcm) != n_bytes:
            self.close()
            raise UserError(f"espeak-ng worker died while speaking {text!r}; "
                            f"reinstall it: {INSTALL_HINT}")
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768

    def close(self) -> None:
        """End the worker (EOF on its stdin), killing it if it has not gone within 10 s."""
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()  # EOF ends the worker's loop
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_WORKER = ("import sys; from melganvc.apps.demo_data.espeak import _serve; "
           "_serve(*sys.argv[1:4])")
