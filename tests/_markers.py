"""Marks tests `gpu` / `triton` from their names so the GPU proof script can select them
(`pytest -m "gpu or triton"`) without every test file repeating the decoration."""


def mark_by_name(items, pytest):
    for item in items:
        name = item.nodeid.lower()
        if "cuda" in name or "gpu" in name:
            item.add_marker(pytest.mark.gpu)
        if "triton" in name:
            item.add_marker(pytest.mark.triton)
