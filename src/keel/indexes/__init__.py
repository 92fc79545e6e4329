"""Retrieval indexes as records: versions of an index over a corpus version (lineage), their blob
(chunks, embeddings, BM25 statistics) written before their row, and the embedding cache by chunk
content hash. Chunking, embedding and searching are keel.genai's (compute); `ws.genai` joins them.

May import: keel.storage (through the Workspace's MetadataStore and BlobStore), keel.entities,
keel.entities_genai, keel.errors, keel.refs.
"""

from keel.indexes.indexes import TextIndexes

__all__ = ["TextIndexes"]
