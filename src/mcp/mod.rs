//! MCP JSON-RPC body inspection (issue 4): in progress.
