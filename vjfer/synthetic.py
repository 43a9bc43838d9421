"""Generated videos with the real RAVDESS / CREMA-D names, layouts and codecs, and a learnable
signal.

Each video shows a drawn face whose shape, motion and colours follow the emotion, strongly enough to
survive a 64-px frozen random ViT; the actor sets the nuisance a probe must generalise across (skin,
background, face position and size, head bob, noise). Files match the releases: RAVDESS
`Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4` (H.264 at 29.97 fps, modality 01 with an AAC track, song and
audio-only distractors) and CREMA-D `VideoFlash/AAAA_SSS_EEE_LL.flv` (Sorenson FLV1 at 30 fps).
Same seed, same bytes (for one PyAV/FFmpeg build).
"""

from __future__ import annotations

import functools
import io
import wave
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Literal

import av
import numpy as np

from vjfer.errors import ConfigError
from vjfer.labels import CLASSES, CREMA_D_CODES

RAVDESS_SIZE = (160, 90)  # (width, height), 16:9 like the 1280x720 originals
CREMA_D_SIZE = (120, 90)  # 4:3 like the 480x360 originals
RAVDESS_FPS = Fraction(30000, 1001)  # 29.97
CREMA_D_FPS = Fraction(30)
FRAMES = 76  # frames per video: one 61-frame clip and a bit
SHORT_FRAMES = 45  # shorter than one clip
SHORT_EVERY = 5  # every 5th trial is short
AUDIO_RATE = 8000  # Hz; low, to keep AAC encoding cheap
_VIDEO_CODECS: dict[str, Literal["libx264", "flv"]] = {"mp4": "libx264", "flv": "flv"}
_BITEXACT = {"fflags": "+bitexact"}  # no version strings in the file: same inputs, same bytes

RAVDESS_SONG_EMOTIONS = tuple(range(1, 7))  # song: neutral, calm, happy, sad, angry, fearful
RAVDESS_NO_SONG_ACTORS = (18,)  # actor 18 recorded no song
CREMA_D_EMOTIONS = tuple(CREMA_D_CODES)
# Demo: two actors per fold (splits/*.csv), so every fold has test actors.
DEMO_RAVDESS_ACTORS = (2, 5, 3, 6, 10, 11, 8, 17, 1, 4)
DEMO_CREMA_D_ACTORS = (1002, 1003, 1004, 1011, 1005, 1006, 1007, 1009, 1001, 1018)


@dataclass(frozen=True)
class FaceStyle:
    """How one emotion looks. Lengths are fractions of the face's half-width / half-height."""

    colour: tuple[int, int, int]  # hair band, cheeks, lips
    mouth_width: float
    mouth_open: float  # mean opening
    mouth_curve: float  # > 0 smile (corners up), < 0 frown
    motion: float  # opening amplitude
    motion_hz: float
    brow_tilt: float  # > 0 inner ends down (angry), < 0 inner ends up (sad)
    brow_raise: float
    eye_size: float


STYLES: dict[str, FaceStyle] = {  # by vocabulary name
    "neutral": FaceStyle((250, 140, 20), 0.50, 0.05, 0.00, 0.02, 0.5, 0.00, 0.00, 1.0),
    "calm": FaceStyle((110, 170, 230), 0.45, 0.04, 0.08, 0.02, 0.3, 0.00, -0.04, 0.5),
    "happy": FaceStyle((250, 210, 30), 0.75, 0.12, 0.30, 0.06, 1.5, 0.00, 0.05, 0.8),
    "sad": FaceStyle((30, 60, 210), 0.45, 0.05, -0.25, 0.02, 0.4, -0.50, 0.00, 0.8),
    "angry": FaceStyle((230, 30, 30), 0.55, 0.10, -0.08, 0.08, 2.5, 0.60, -0.08, 0.7),
    "fearful": FaceStyle((160, 50, 210), 0.45, 0.20, -0.12, 0.10, 4.0, -0.40, 0.10, 1.4),
    "disgust": FaceStyle((50, 180, 60), 0.50, 0.08, -0.18, 0.03, 1.0, 0.30, 0.00, 0.6),
    "surprised": FaceStyle((20, 210, 210), 0.30, 0.35, 0.00, 0.05, 0.8, 0.00, 0.18, 1.6),
}


@dataclass(frozen=True)
class Nuisance:
    """What differs between actors and not between emotions."""

    skin: tuple[int, int, int]
    background: tuple[int, int, int]
    centre: tuple[float, float]  # face centre, fractions of (width, height)
    scale: float  # face size, fraction of frame height
    bob: float  # head bob amplitude, pixels
    noise: float  # pixel noise std


def seeded_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator for (seed, keys...), stable across runs and platforms."""
    words = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng([seed, *words])


def actor_nuisance(seed: int, dataset: str, actor: int) -> Nuisance:
    """The nuisance of one actor: the same in every video of that actor (for a seed)."""
    rng = seeded_rng(seed, dataset, actor)
    tone = rng.uniform(0.25, 1.0)
    skin = (round(255 * tone), round(200 * tone + 20), round(160 * tone + 20))
    red, green, blue = (int(c) for c in rng.integers(20, 236, 3))
    return Nuisance(
        skin=skin,
        background=(red, green, blue),
        centre=(0.5 + rng.uniform(-0.06, 0.06), 0.5 + rng.uniform(-0.05, 0.05)),
        scale=rng.uniform(0.36, 0.42),
        bob=rng.uniform(0.5, 2.0),
        noise=rng.uniform(2.0, 6.0),
    )


def _ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _paste(frames: np.ndarray, boxes: np.ndarray, mask: np.ndarray, top: int, left: int) -> None:
    """frames[:, top:, left:][:, mask] = boxes[:, mask], clipped (a face near the edge overhangs).

    frames [k, H, W, 3], boxes [k, h, w, 3], mask [h, w]; every frame gets its box at one place.
    """
    H, W = frames.shape[1:3]
    h, w = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    if y0 < y1 and x0 < x1:
        sub = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        np.copyto(frames[:, y0:y1, x0:x1], boxes[:, sub[0], sub[1]], where=mask[sub][..., None])


def _face_box(
    style: FaceStyle,
    nuisance: Nuisance,
    height: int,
    n_frames: int,
    fps: float,
    phase: float,
    strength: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The face of each frame in its own box: uint8 [T, 2B+1, 2B+1, 3] and the face mask
    [2B+1, 2B+1].

    Skin, hair, cheeks and eyes are drawn once; brows and mouth for all frames at once.
    """
    T = n_frames
    ry = nuisance.scale * height  # face half-height
    rx = 0.8 * ry
    B = int(np.ceil(1.05 * ry))  # box half-size
    y, x = np.mgrid[-B : B + 1, -B : B + 1].astype(np.float32)  # box coordinates, face centre 0
    face = _ellipse(x, y, 0, 0, rx, ry)
    box = np.empty(face.shape + (3,), np.uint8)
    box[:] = nuisance.skin
    box[face & (y < -0.55 * ry)] = style.colour  # hair band: the largest class-coloured patch
    eye_height = 0.09 * ry * style.eye_size
    for side in (-1, 1):
        box[_ellipse(x, y, side * 0.55 * rx, 0.2 * ry, 0.24 * rx, 0.16 * ry)] = style.colour
        box[_ellipse(x, y, side * 0.38 * rx, -0.22 * ry, 0.14 * rx, eye_height)] = 25
    box = np.repeat(box[None], T, axis=0)  # [T, 2B+1, 2B+1, 3]

    s = (np.arange(T, dtype=np.float32) / np.float32(fps))[:, None, None]  # seconds, [T, 1, 1]
    top = slice(0, B + 1 - int(0.15 * ry))  # brows live above the eyes
    yt, xt = y[top], x[top]
    for side in (-1, 1):  # brows: inner ends (towards x = 0) lower for tilt > 0
        bx = side * 0.4 * rx
        by = -(0.42 + strength * style.brow_raise) * ry - 0.02 * ry * np.sin(2 * np.pi * s)
        line = by - side * strength * style.brow_tilt * 0.6 * (xt - bx)
        box[:, top][(np.abs(yt - line) < 0.06 * ry) & (np.abs(xt - bx) < 0.24 * rx)] = (60, 35, 20)
    low = slice(B, None)  # the mouth lives in the lower half
    yl, xl = y[low], x[low]
    opening = style.mouth_open + style.motion * np.sin(2 * np.pi * style.motion_hz * s + phase)
    opening = np.maximum(0.02, strength * opening) * ry  # [T, 1, 1]
    mw = style.mouth_width * rx
    u = np.clip(xl / mw, -1, 1)
    centre_line = 0.5 * ry + strength * style.mouth_curve * ry * 0.5 * (1 - 2 * u**2)
    gap = np.where(np.abs(xl) < mw, np.abs(yl - centre_line), np.inf)
    half = opening * np.sqrt(1 - u**2)  # [T, B+1, 2B+1]
    box[:, low][gap < half + 0.07 * ry] = style.colour  # lips
    box[:, low][gap < half] = (40, 10, 20)  # open mouth
    return box, face


def _paste_moving(
    box: np.ndarray,
    face: np.ndarray,
    nuisance: Nuisance,
    size: tuple[int, int],
    fps: float,
    bob_hz: float,
    phase: float,
) -> np.ndarray:
    """The boxes [T, 2B+1, 2B+1, 3] pasted on the background at each frame's integer head
    position (the head bobs at `bob_hz`): uint8 [T, H, W, 3]."""
    (W, H), T, B = size, len(box), box.shape[1] // 2
    t = np.arange(T) / fps
    cx = nuisance.centre[0] * W + nuisance.bob * np.sin(2 * np.pi * bob_hz * t + phase)
    cy = nuisance.centre[1] * H + nuisance.bob * np.cos(2 * np.pi * bob_hz * t)
    corner = np.rint(np.stack([cy, cx], 1)).astype(int) - B  # [T, 2] box top-left
    frames = np.empty((T, H, W, 3), np.uint8)
    frames[:] = np.full((H, W, 3), nuisance.background, np.uint8)
    moves = np.flatnonzero((corner[1:] != corner[:-1]).any(1)) + 1  # the head moves slowly:
    for i, j in zip(np.r_[0, moves], np.r_[moves, T], strict=True):  # paste runs of frames
        _paste(frames[i:j], box[i:j], face, *corner[i])
    return frames


def render_face(
    style: FaceStyle,
    nuisance: Nuisance,
    size: tuple[int, int],
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
    strength: float = 1.0,
) -> np.ndarray:
    """Frames of one video, uint8 [T, H, W, 3] RGB. `strength` scales the expression (intensity).

    The face is drawn once per video in its own box (skin, hair, cheeks, eyes), brows and mouth are
    drawn for all frames at once, and the box is pasted at each frame's integer head position.
    """
    phase = rng.uniform(0, 2 * np.pi)
    box, face = _face_box(style, nuisance, size[1], n_frames, fps, phase, strength)
    frames = _paste_moving(box, face, nuisance, size, fps, rng.uniform(0.2, 0.6), phase)
    # Noise in uint8 without overflow: values kept in 16..239, noise within +-16 (a 7-frame cycle).
    H, W = size[1], size[0]
    noise = rng.standard_normal((7, H, W, 3), dtype=np.float32) * nuisance.noise
    noise = np.clip(np.rint(noise), -16, 16).astype(np.int8).view(np.uint8)
    np.clip(frames, 16, 239, out=frames)
    for i in range(n_frames):
        frames[i] += noise[i % 7]  # wraps modulo 256, i.e. adds the signed noise
    return frames


# ---- writing ------------------------------------------------------------------------------------


def _tone(n_samples: int, pitch: float) -> np.ndarray:
    """A quiet sine, float32 [n] at AUDIO_RATE."""
    return 0.1 * np.sin(2 * np.pi * pitch / AUDIO_RATE * np.arange(n_samples, dtype=np.float32))


def write_video(
    target: Path | BinaryIO, frames: np.ndarray, fps: Fraction, fmt: Literal["mp4", "flv"]
) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames: mp4 H.264 (libx264, yuv420p), flv FLV1 (Sorenson)."""
    T, H, W, _ = frames.shape
    codec = _VIDEO_CODECS[fmt]
    # ultrafast, but with B-frames: decode order differs from display order, as in real files
    options = (
        {"preset": "ultrafast", "x264-params": "bframes=3", "crf": "23"} if fmt == "mp4" else {}
    )
    with av.open(target, "w", format=fmt, options=_BITEXACT) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.thread_count = 1  # frames this small gain nothing from threads
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_wav(target: Path | BinaryIO, samples: np.ndarray) -> None:
    """16-bit mono PCM .wav at AUDIO_RATE, as RAVDESS audio-only files."""
    with wave.open(str(target) if isinstance(target, Path) else target, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@functools.lru_cache(maxsize=8)
def _aac_track(n_samples: int) -> bytes:
    """An .m4a of `n_samples` of a 220 Hz tone in AAC; encoded once per length (AAC is slow)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options=_BITEXACT) as container:
        sound = container.add_stream(
            "aac", rate=AUDIO_RATE, layout="mono", options={"aac_coder": "fast"}
        )
        tone = _tone(n_samples, 220.0)[None]
        chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = AUDIO_RATE, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return buffer.getvalue()


def _add_audio(source: Path, target: Path, n_samples: int) -> None:
    """`target` = `source`'s video packets plus an AAC track, both copied without re-encoding."""
    with (
        av.open(source, "r") as video_in,
        av.open(io.BytesIO(_aac_track(n_samples)), "r") as audio_in,
        av.open(target, "w", format="mp4", options=_BITEXACT) as out,
    ):
        inputs = ((video_in, video_in.streams.video[0]), (audio_in, audio_in.streams.audio[0]))
        copies = [out.add_stream_from_template(s) for _, s in inputs]  # all streams before muxing
        for (container, stream), copy in zip(inputs, copies, strict=True):
            for packet in container.demux(stream):
                if packet.dts is not None:  # not the demuxer's empty flush packet
                    packet.stream = copy
                    out.mux(packet)


def trial_lengths(n_trials: int, frames: int, short_every: int, short_frames: int) -> list[int]:
    """Frames per trial, in generation order: every `short_every`-th is `short_frames` long."""
    return [
        short_frames if short_every and i % short_every == short_every - 1 else frames
        for i in range(n_trials)
    ]


def ravdess_trials(
    actors: Iterable[int],
    emotions: Iterable[int],
    intensities: Iterable[int],
    statements: Iterable[int],
    repetitions: Iterable[int],
    vocal_channels: Iterable[int],
) -> list[tuple[int, int, int, int, int, int]]:
    """(VV, EE, II, SS, RR, AA) of the real RAVDESS trials within the given values, sorted.

    Real constraints: neutral has normal intensity only; song has emotions 01..06 only; actor 18
    recorded no song.
    """
    trials = []
    for aa in actors:
        for vv in vocal_channels:
            if vv == 2 and aa in RAVDESS_NO_SONG_ACTORS:
                continue
            for ee in emotions:
                if vv == 2 and ee not in RAVDESS_SONG_EMOTIONS:
                    continue
                for ii in intensities:
                    if ee == 1 and ii == 2:
                        continue
                    trials += [(vv, ee, ii, ss, rr, aa) for ss in statements for rr in repetitions]
    return sorted(trials, key=lambda t: (t[5], *t[:5]))


def ravdess_name(mm: int, vv: int, ee: int, ii: int, ss: int, rr: int, aa: int) -> str:
    return f"{mm:02d}-{vv:02d}-{ee:02d}-{ii:02d}-{ss:02d}-{rr:02d}-{aa:02d}"


def make_ravdess(
    root: str | Path,
    *,
    actors: Sequence[int] = (1, 2),
    emotions: Sequence[int] = tuple(range(1, 9)),
    intensities: Sequence[int] = (1,),
    statements: Sequence[int] = (1,),
    repetitions: Sequence[int] = (1,),
    vocal_channels: Sequence[int] = (1, 2),
    modalities: Sequence[int] = (1, 2, 3),
    size: tuple[int, int] = RAVDESS_SIZE,
    fps: Fraction = RAVDESS_FPS,
    frames: int = FRAMES,
    short_every: int = SHORT_EVERY,
    short_frames: int = SHORT_FRAMES,
    flat: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write RAVDESS-named files under `root/Actor_XX/` (or `root/` if `flat`); return them sorted.

    One drawn trial per (VV, EE, II, SS, RR, AA) of `ravdess_trials`, written as modality 02
    (H.264 .mp4), 01 (the same video plus an AAC track) and 03 (an audio-only .wav), as selected by
    `modalities`. Vocal channel 2 (song) trials are distractors the default index skips.

    Args:
        size: (width, height), both even (yuv420p).
        frames: frames per video; every `short_every`-th trial has `short_frames` (0 = none short).
    """
    root = Path(root)
    if size[0] % 2 or size[1] % 2:
        raise ConfigError(f"size must be even for yuv420p, got {size}")
    trials = ravdess_trials(actors, emotions, intensities, statements, repetitions, vocal_channels)
    written = []
    lengths = trial_lengths(len(trials), frames, short_every, short_frames)
    for (vv, ee, ii, ss, rr, aa), n in zip(trials, lengths, strict=True):
        folder = root if flat else root / f"Actor_{aa:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        rng = seeded_rng(seed, "ravdess", vv, ee, ii, ss, rr, aa)
        n_samples = round(n / fps * AUDIO_RATE)
        path = {mm: folder / (ravdess_name(mm, vv, ee, ii, ss, rr, aa) + ".mp4") for mm in (1, 2)}
        if 1 in modalities or 2 in modalities:
            style = STYLES[CLASSES["ravdess"][ee - 1]]  # class index = EE - 1
            nuisance = actor_nuisance(seed, "ravdess", aa)
            video = render_face(style, nuisance, size, n, float(fps), rng, 1.0 + 0.3 * (ii - 1))
            write_video(path[2], video, fps, "mp4")
            if 1 in modalities:
                _add_audio(path[2], path[1], n_samples)
            if 2 not in modalities:
                path[2].unlink()
            written += [path[mm] for mm in (1, 2) if mm in modalities]
        if 3 in modalities:
            written.append(folder / (ravdess_name(3, vv, ee, ii, ss, rr, aa) + ".wav"))
            write_wav(written[-1], _tone(n_samples, rng.uniform(150, 400)))
    return sorted(written)


def crema_d_trials(
    actors: Iterable[int], emotions: Iterable[str], sentences: Iterable[str]
) -> list[tuple[int, str, str, str]]:
    """(actor, sentence, emotion, level) of the real CREMA-D design within the given values, sorted.

    Sentence IEO was recorded at levels LO, MD, HI (neutral: XX only); the other 11 at XX.
    """
    trials = []
    for actor in actors:
        for sentence in sentences:
            for emotion in emotions:
                levels = ("LO", "MD", "HI") if sentence == "IEO" and emotion != "NEU" else ("XX",)
                trials += [(actor, sentence, emotion, level) for level in levels]
    return sorted(trials)


def crema_d_name(actor: int, sentence: str, emotion: str, level: str) -> str:
    return f"{actor}_{sentence}_{emotion}_{level}"


def make_crema_d(
    root: str | Path,
    *,
    actors: Sequence[int] = (1001, 1002),
    emotions: Sequence[str] = CREMA_D_EMOTIONS,
    sentences: Sequence[str] = ("TIE", "IWW"),
    size: tuple[int, int] = CREMA_D_SIZE,
    fps: Fraction = CREMA_D_FPS,
    frames: int = FRAMES,
    short_every: int = SHORT_EVERY,
    short_frames: int = SHORT_FRAMES,
    flat: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write CREMA-D-named FLV1 videos under `root/VideoFlash/` (or `root/` if `flat`); return them
    sorted.

    Trials follow `crema_d_trials`; level sets expression strength (LO 0.7, MD/XX 1.0, HI 1.3).
    """
    root = Path(root)
    if size[0] % 2 or size[1] % 2:
        raise ConfigError(f"size must be even for yuv420p, got {size}")
    folder = root if flat else root / "VideoFlash"
    folder.mkdir(parents=True, exist_ok=True)
    trials = crema_d_trials(actors, emotions, sentences)
    strength = {"LO": 0.7, "MD": 1.0, "HI": 1.3, "XX": 1.0}
    written = []
    lengths = trial_lengths(len(trials), frames, short_every, short_frames)
    for (actor, sentence, emotion, level), n in zip(trials, lengths, strict=True):
        rng = seeded_rng(seed, "crema-d", actor, sentence, emotion, level)
        style = STYLES[CREMA_D_CODES[emotion]]
        nuisance = actor_nuisance(seed, "crema-d", actor)
        video = render_face(style, nuisance, size, n, float(fps), rng, strength[level])
        written.append(folder / (crema_d_name(actor, sentence, emotion, level) + ".flv"))
        write_video(written[-1], video, fps, "flv")
    return sorted(written)


# ---- complete name sets and the demo ----------------------------------------------------------


def demo_datasets(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """A small RAVDESS-like and CREMA-D-like set for the demo: {"ravdess": dir, "crema-d": dir}.

    Two actors per fold (so every fold has test actors), every class; RAVDESS: 80 speech trials as
    modality 01 and 02 (160 videos), a few song and audio-only distractors; CREMA-D: 120 videos.
    """
    root = Path(root)
    ravdess, crema_d = root / "ravdess", root / "crema-d"
    make_ravdess(ravdess, actors=DEMO_RAVDESS_ACTORS, vocal_channels=(1,), seed=seed)
    make_ravdess(
        ravdess, actors=DEMO_RAVDESS_ACTORS[:2], emotions=(3, 5), vocal_channels=(2,), seed=seed
    )
    make_crema_d(crema_d, actors=DEMO_CREMA_D_ACTORS, seed=seed)
    return {"ravdess": ravdess, "crema-d": crema_d}
