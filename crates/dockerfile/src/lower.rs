//! Lowering: typed Dockerfile instructions + build args + target -> `graph::Definition`.
