//! `flotilla demo`: a real cluster on one Linux machine.
