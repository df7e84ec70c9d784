"""Engines: the Engine protocol and its SGLang and OpenAI-compatible clients, with their shared transport."""
