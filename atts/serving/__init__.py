"""Serving: launching SGLang / vLLM servers from one spec, and the fault-injecting proxy."""
