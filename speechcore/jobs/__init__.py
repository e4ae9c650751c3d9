"""Long texts as jobs the server owns: durable on disk under the output folder, synthesized line by
line over the engine's replicas behind interactive requests, resumable after a restart."""
