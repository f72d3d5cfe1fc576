"""Readers and writers: audio files, checkpoints (CTranslate2 model.bin, openai-whisper .pt,
Hugging Face safetensors directories). Submodules are imported on use."""
