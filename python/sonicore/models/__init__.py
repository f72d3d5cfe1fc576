"""Networks built from sonicore ops (torch.nn modules): mmaudio, whisper, ..."""
