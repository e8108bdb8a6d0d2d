"""`adapterhub demo`: the end-to-end demo on the real all-MiniLM-L6-v2 and its shipped adapters."""
