//! A group of nodes in one process over an in-memory network (filled in below).
