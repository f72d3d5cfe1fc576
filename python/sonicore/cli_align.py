"""`sonicore align AUDIO TEXT -o OUT` : word/line times of known lyrics or a transcript."""
from __future__ import annotations

import os


def _cmd_align(args) -> int:
    from .pipelines.align import Aligner
    if not os.path.isfile(args.text):
        raise FileNotFoundError(f"text file not found: {args.text}")
    try:
        with open(args.text, "r", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ValueError(f"{args.text} is not UTF-8 text; save the lyrics as UTF-8") from None
    out = args.output or os.path.splitext(args.audio)[0] + ".lrc"
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".json", ".lrc", ".srt", ".vtt", ".tsv"):
        raise ValueError(f"cannot tell the output format from {out!r}: use .json, .lrc, .srt, .vtt or .tsv")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install matplotlib (or 'sonicore[plot]')") from None
    aligner = Aligner.from_pretrained(args.model, language=args.language, device=args.device,
                                      encoder_precision=args.precision)
    progress = None if not args.quiet else False
    result = aligner.align(args.audio, text, progress=progress)
    result.save(out, word_level_lrc=not args.line_lrc)
    if args.plot:
        from .io.audio import load_audio
        from .ops import whisper_log_mel
        audio, sr = load_audio(args.audio, sr=16000, mono=True)
        result.plot(args.plot, audio=audio[0], sr=sr, mel=whisper_log_mel(audio[0]))
    if not args.quiet:
        print(f"{len(result.words)} words on {result.duration:.1f} s of audio -> {out}")
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser("align", help="put word and line times on known lyrics or a transcript",
                              description="Aligns a text (lyrics or transcript; one line per line) to an audio "
                                          "file with Whisper's cross-attention alignment heads.")
    s.add_argument("audio", help="audio file (wav, flac, ogg, mp3; any sample rate and channel count)")
    s.add_argument("text", help="UTF-8 text file; line breaks are kept, blank lines and [tags] ignored")
    s.add_argument("-o", "--output", help="output file; format from the extension: .lrc (default, enhanced "
                                          "word-level), .json, .srt, .vtt, .tsv")
    s.add_argument("--model", default="tiny.en", help="tiny.en (installed package) or a path to Whisper files "
                                                      "(CTranslate2 dir, Hugging Face dir, openai .pt)")
    s.add_argument("--language", default=None, help="language code for multilingual models (e.g. de)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    s.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="the encoder's GEMMs: auto = bfloat16 on CPUs with AMX / AVX-512 BF16, else float32")
    s.add_argument("--line-lrc", action="store_true", help="write line-level LRC instead of enhanced word-level")
    s.add_argument("--plot", metavar="PNG", help="also draw the waveform with word boundaries (needs matplotlib)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    s.set_defaults(func=_cmd_align)
