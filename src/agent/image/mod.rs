//! The agent's image store: pulling OCI images from registries, verifying
//! every byte, unpacking layers safely, and keeping blobs, layers and image
//! references in a content-addressed store under the agent's root.

pub mod unpack;
