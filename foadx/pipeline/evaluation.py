"""The pipeline's [eval] stage: the unpruned model and every pruned or fine-tuned variant scored
by the evaluate task (``foadx.tasks.evaluate``, where what a score is gets decided), each with
cross-model rows against a gallery model: the pipeline's own unpruned model (``gallery_model =
"unpruned"``) or a MODEL. One ``foadx.eval`` report per variant, ``eval/VARIANT.json``.
"""

from __future__ import annotations

from typing import Any

from foadx.atomic import write_json
from foadx.pipeline.stage import UNPRUNED, Record, StageContext
from foadx.pipeline.variants import final_models, variant_model
from foadx.resolve import BuildOptions, ModelRef, as_ref, resolve_model


def _request(context: StageContext) -> Any:
    """The [eval] section as the evaluate task's ``EvalRequest``: its protocol and FAR, and its
    data with that data's own task, else [data] with [data]'s task and held-out fraction."""
    from foadx.tasks.evaluate import EvalRequest

    settings, data = context.settings("eval"), context.settings("data")
    own = {"data": settings["data"]} if settings["data"] else {"data": data["source"], "task": data["task"],
                                                                "val_split": data["val_split"]}
    return EvalRequest(**own, far=settings["far"], seed=context.settings("model")["seed"], protocol=settings["protocol"])


def _gallery(context: StageContext, models: dict[str, str | None]) -> ModelRef | None:
    """The gallery model [eval] names: None, the run's own unpruned model, or a MODEL (resolved
    as the pipeline trusts code)."""
    text = context.settings("eval")["gallery_model"]
    if text is None:
        return None
    if text == UNPRUNED:
        return as_ref(variant_model(context.pipeline, context.run, models[UNPRUNED]), UNPRUNED)
    return resolve_model(text, BuildOptions(trust_code=context.pipeline.trust_code))


def eval_stage(context: StageContext) -> Record:
    """Scores each variant (the unpruned one first) into ``eval/VARIANT.json``; the unpruned
    model gets no cross rows against itself.

    Returns:
        ``{"reports": variant -> path, "summary": variant -> the report's summary, "far": the FAR
        TAR is at}`` (face: ``tar``, ``eer``, ``auc``, ``cross_tar``; TAR None where not measurable).

    Raises:
        BadInputError, DataError: what the evaluate task refuses (data the protocol cannot use,
            a gallery model of another input or embedding size, a broken model's embeddings).
    """
    from foadx.tasks.evaluate import evaluate

    request, models = _request(context), final_models(context.inputs)
    gallery = _gallery(context, models)
    record: Record = {"reports": {}, "summary": {}, "far": request.far}
    for variant, relative in models.items():
        ref = as_ref(variant_model(context.pipeline, context.run, relative), variant)
        against = None if gallery is None or gallery.text == variant == UNPRUNED else gallery
        report, result = evaluate(ref, request, against)
        write_json(context.folder / f"{variant}.json", report)
        record["reports"][variant] = f"eval/{variant}.json"
        record["summary"][variant] = result.summary()
    return record
