"""Generative AI on the workspace's own text (compute: values in, values out; never storage)."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

# answers from retrieved passages: the prompt and the citations an answer used (pure Python)
from keel.genai.answer import Citations as Citations
from keel.genai.answer import answer_prompt as answer_prompt
from keel.genai.answer import find_citations as find_citations

# corpora, the n-gram baseline and retrieval (numpy/scipy only; the embedder loads its model on first use)
from keel.genai.bm25 import BM25 as BM25

# a transformers GPT-2 checkpoint's values (config, safetensors tensors, tokenizer JSON) as a TrainedLM
from keel.genai.checkpoint import lm_from_gpt2 as lm_from_gpt2
from keel.genai.corpus import DedupeReport as DedupeReport
from keel.genai.corpus import Document as Document
from keel.genai.corpus import dedupe_paragraphs as dedupe_paragraphs
from keel.genai.corpus import dedupe_split as dedupe_split
from keel.genai.corpus import documents_from_folder as documents_from_folder
from keel.genai.corpus import documents_from_table as documents_from_table
from keel.genai.corpus import split_documents as split_documents
from keel.genai.embeddings import Embedder as Embedder
from keel.genai.embeddings import embed_chunks as embed_chunks

# language models: values and bytes are torch-free (lm.py, lm_io.py, tokenizer.py); training, generation and
# the torch module load torch on first use through __getattr__ below, so `import keel.genai` stays light
from keel.genai.lm import PRESETS as PRESETS
from keel.genai.lm import Generation as Generation
from keel.genai.lm import GPTConfig as GPTConfig
from keel.genai.lm import TrainedLM as TrainedLM
from keel.genai.lm import count_parameters as count_parameters
from keel.genai.lm_io import lm_from_bytes as lm_from_bytes
from keel.genai.lm_io import lm_to_bytes as lm_to_bytes
from keel.genai.ngram import KneserNey as KneserNey
from keel.genai.retrieval import Chunk as Chunk
from keel.genai.retrieval import Hit as Hit
from keel.genai.retrieval import HybridIndex as HybridIndex
from keel.genai.retrieval import chunk as chunk
from keel.genai.retrieval_eval import RetrievalQuestion as RetrievalQuestion
from keel.genai.retrieval_eval import RetrievalReport as RetrievalReport
from keel.genai.retrieval_eval import evaluate_retrieval as evaluate_retrieval
from keel.genai.retrieval_eval import questions_from as questions_from

# drift of prompts against the training corpus, on embeddings (text_drift.py; numpy/scipy/sklearn only)
from keel.genai.text_drift import LengthStats as LengthStats
from keel.genai.text_drift import TextDrift as TextDrift
from keel.genai.text_drift import length_stats as length_stats
from keel.genai.text_drift import text_drift as text_drift
from keel.genai.tokenizer import BPETokenizer as BPETokenizer
from keel.genai.tokenizer import train_tokenizer as train_tokenizer

if _TYPE_CHECKING:
    from keel.genai.generation import generate as generate
    from keel.genai.generation import stream as stream
    from keel.genai.generation import stream_generation as stream_generation
    from keel.genai.lora import DEFAULT_TARGETS as DEFAULT_TARGETS
    from keel.genai.lora import LoRAAdapter as LoRAAdapter
    from keel.genai.lora import Tuned as Tuned
    from keel.genai.lora import adapter_from_bytes as adapter_from_bytes
    from keel.genai.lora import adapter_perplexity as adapter_perplexity
    from keel.genai.lora import adapter_to_bytes as adapter_to_bytes
    from keel.genai.lora import merge_adapter as merge_adapter
    from keel.genai.lora import tune_lm as tune_lm
    from keel.genai.lora import weights_digest as weights_digest
    from keel.genai.model import GPT as GPT
    from keel.genai.train import perplexity as perplexity
    from keel.genai.train import train_lm as train_lm

_LAZY = {
    "GPT": "keel.genai.model",
    "train_lm": "keel.genai.train",
    "perplexity": "keel.genai.train",
    "generate": "keel.genai.generation",
    "stream": "keel.genai.generation",
    "stream_generation": "keel.genai.generation",
    # LoRA / full fine-tuning (lora.py; torch, and peft when an adapter is built)
    "DEFAULT_TARGETS": "keel.genai.lora",
    "LoRAAdapter": "keel.genai.lora",
    "Tuned": "keel.genai.lora",
    "adapter_from_bytes": "keel.genai.lora",
    "adapter_perplexity": "keel.genai.lora",
    "adapter_to_bytes": "keel.genai.lora",
    "merge_adapter": "keel.genai.lora",
    "tune_lm": "keel.genai.lora",
    "weights_digest": "keel.genai.lora",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'keel.genai' has no attribute {name!r}")
