"""RVC voice conversion in plain Python (torch): community `.pth` voice models (v1 and v2, with
and without f0), content embedders (HuBERT / ContentVec), pitch trackers and FAISS retrieval.
No Ray and no web framework here; the `rvc` deployment wraps it."""
