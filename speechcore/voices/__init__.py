"""The voice library: voices uploaded over the API for XTTS (reference clips), Piper (a model
and its config) and RVC (a model and its index), checked before they are listed, stored in the
server root's usual folders (shared by every replica and node), removed over the API."""
