//! Talking to OCI registries: client configuration (TLS, insecure registries),
//! shared by the demo's image push and the agent's pull.
