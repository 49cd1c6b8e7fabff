"""Control: the parameter table and the MIDI and OSC inputs that drive it."""
