//! A scripted Anthropic Messages API (being written).
