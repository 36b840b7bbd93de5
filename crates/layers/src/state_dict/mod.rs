//! safetensors state dicts (in progress).
