"""Ray-free, torch-free core of the server: the AllTalk wire contract, settings, text and audio
processing, output storage, and the generation service that drives engines through a protocol."""
