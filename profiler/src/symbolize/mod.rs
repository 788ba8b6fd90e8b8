//! Symbolization of raw addresses with blazesym: user frames per process, kernel frames.
