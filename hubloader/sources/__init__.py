"""The hubs: HuggingFace and CivitAI clients, and the references (URLs, AIRs, repo paths) that name their files."""
