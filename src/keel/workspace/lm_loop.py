"""Language models that follow their corpus: a model project with an `lm:` section (keel.retraining.
_project_lm) is a GPT trained on the newest version of its corpus. Each retraining cycle (a new corpus
version, a prompt-drift alert, a schedule, by hand) trains a challenger with `ws.genai.train` (registered
as the model's next version) and scores challenger and champion on the same texts, the held-out split of
that corpus version, so that the gate (keel.retraining.gate, metric `perplexity`, lower is better)
compares them on text neither was trained on.

Which perplexity: per token when both models cut text with the same tokenizer; otherwise per byte,
exp(total negative log-likelihood / UTF-8 bytes of the held-out texts), because a token of one tokenizer
is not a token of another (a vocabulary with longer tokens makes fewer, harder predictions) and a new
corpus version trains a new tokenizer. The evidence says which was used and gives both.

The champion may have been trained on an older version whose held-out split overlaps the new version's
training side; it is scored on the new held-out split all the same, so a champion that saw some of those
texts is, if anything, flattered: a challenger that still wins has earned it.

`LMLoop` trains language model projects; `ProjectTrainers` is the one trainer the retraining is given
(keel.retraining.project.PolicyTrainer), passing each project to the loop its section names, so the
retraining never imports the workspace.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError

if TYPE_CHECKING:
    from keel.entities import ModelVersion
    from keel.genai.lm import TrainedLM
    from keel.retraining.project import PolicyTrainer, Project
    from keel.workspace.facade import Workspace

__all__ = ["LMLoop", "ProjectTrainers", "held_out_scores"]

Trained = tuple["ModelVersion", dict[str, float], "dict[str, float] | None", "str | None"]


class LMLoop:
    """Train the challenger on the newest corpus version and score both models on its held-out split."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def train(
        self, project: Project, dataset: str | None, champion: ModelVersion | None, evidence: dict[str, Any]
    ) -> Trained:
        """(the challenger, its metrics, the champion's on the same texts or None, the training run)."""
        lm = project.lm
        assert lm is not None
        ref = dataset or project.data.dataset
        corpus = self._ws.datasets.get(ref if "@" in ref else f"{ref}@latest")
        evidence["data"] = {"dataset": corpus.ref}
        candidate = self._ws.genai.train(
            project.model,
            corpus.ref,
            config=lm.config,
            text_column=lm.text_column,
            steps=lm.steps,
            tokens=lm.tokens,
            batch=lm.batch,
            lr=lm.lr,
            seed=lm.seed,
            device=lm.device,
            threads=lm.threads,
            vocab_size=lm.vocab_size,
            valid_share=lm.valid_share,
            description=f"trained by keel retraining on {corpus.ref}",
        )
        split = self._ws.genai.split(corpus.ref, text_column=lm.text_column, valid_share=lm.valid_share, seed=lm.seed)
        challenger_lm = self._load(candidate)
        if champion is None:
            scores = held_out_scores(challenger_lm, None, split.valid, device=lm.device, threads=lm.threads)
            evidence["lm"] = scores | {"held_out_documents": len(split.valid)}
            return candidate, {"perplexity": scores["challenger"]}, None, candidate.run_id
        champion_lm = self._load(champion)
        scores = held_out_scores(challenger_lm, champion_lm, split.valid, device=lm.device, threads=lm.threads)
        evidence["lm"] = scores | {"held_out_documents": len(split.valid), "champion_corpus": _corpus(champion)}
        return candidate, {"perplexity": scores["challenger"]}, {"perplexity": scores["champion"]}, candidate.run_id

    def _load(self, version: ModelVersion) -> TrainedLM:
        if version.flavor != "lm":
            raise InvalidInputError(
                f"{version.ref} is a {version.flavor!r} model; a language model project's champion must be an lm "
                "version: move @champion to one, or give the project another model name"
            )
        model: TrainedLM = self._ws.models.load(version).model
        return model


def held_out_scores(
    challenger: TrainedLM, champion: TrainedLM | None, texts: tuple[str, ...], *, device: str = "cpu", threads: int = 1
) -> dict[str, Any]:
    """Both models' perplexity on `texts`, in one unit: per token when they share a tokenizer (or there is
    no champion), else per byte. Also each model's token perplexity, and the unit used."""
    from keel.genai.train import perplexity, token_stream

    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    models = {"challenger": challenger} | ({"champion": champion} if champion is not None else {})
    token_ppl = {k: perplexity(m, texts, device=device, threads=threads) for k, m in models.items()}
    same = champion is None or challenger.tokenizer().to_str() == champion.tokenizer().to_str()
    out: dict[str, Any] = {"unit": "token" if same else "byte", "held_out_bytes": n_bytes}
    for key, model in models.items():
        predicted = len(token_stream(model.tokenizer(), texts)) - 1  # every token after the first <|bos|>
        out[f"{key}_token_perplexity"] = token_ppl[key]
        out[f"{key}_byte_perplexity"] = math.exp(math.log(token_ppl[key]) * predicted / n_bytes)
        out[key] = token_ppl[key] if same else out[f"{key}_byte_perplexity"]
    return out


class ProjectTrainers:
    """The retraining's PolicyTrainer: a language model project to LMLoop, a policy project to PolicyLoop."""

    def __init__(self, policies: PolicyTrainer, lms: LMLoop) -> None:
        self._policies = policies
        self._lms = lms

    def train(self, project: Project, dataset: str | None, champion: Any, evidence: dict[str, Any]) -> Trained:
        trainer = self._lms if project.lm is not None else self._policies
        return trainer.train(project, dataset, champion, evidence)


def _corpus(version: ModelVersion) -> str | None:
    return version.tags.get("keel.corpus") or (version.datasets[0] if version.datasets else None)
