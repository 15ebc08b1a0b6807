//! The benchmark instrument behind `vlmctl bench`: OpenAI-compatible (`/v1/chat/completions`) and
//! Ollama (`/api/chat`) clients, the runbooks' workloads and configs, statistics, reports and the
//! baseline comparison (DESIGN.md, "The benchmark").
//!
//! This crate never talks to Docker: it measures whatever server a plan points at.
