"""The audio host: the process that owns the output stream, fed by the engine through shared memory."""
