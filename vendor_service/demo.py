"""The demo world's teacher as the default model of ``vendor-service serve``.

The only module of ``vendor_service`` that knows ``demo_world``: the app and the loader take
explicit settings (architecture, config dirs, checkpoint, card text); the CLI fills them from
here when no model is named. Serving any named model never imports the demo world, so an image
without it serves every other model.
"""

from __future__ import annotations

from vendor_service.inference.loading import ModelUnavailable
from vendor_service.settings import ModelSettings

BUILD_TEACHER_COMMAND = "python -m demo_world build-teacher"


def demo_teacher() -> ModelSettings:
    """The demo teacher's architecture, config dir, shipped checkpoint and card text.

    Raises:
        ModelUnavailable: the demo world is not installed, or its checkpoint was not built.
    """
    try:
        from demo_world.assets import (
            DEMO_TEACHER_DESCRIPTION,
            DEMO_TEACHER_MODEL,
            demo_teacher_checkpoint,
        )
        from demo_world.models import MODEL_CONFIG_DIR
    except ImportError as exc:
        raise ModelUnavailable(
            "no model named and the demo world is not installed: pass --model.name "
            "(and --model.pretrained, --model.config-dirs) or set VENDOR_MODEL__NAME"
        ) from exc
    path = demo_teacher_checkpoint()
    if not path.is_file():
        raise ModelUnavailable(
            f"the default model {DEMO_TEACHER_MODEL!r} needs its checkpoint {path}, which "
            f"does not exist; build it with `{BUILD_TEACHER_COMMAND}`, or serve another "
            "model (e.g. `--model.name vl2v-tiny` for random test weights)"
        )
    return ModelSettings(
        name=DEMO_TEACHER_MODEL,
        pretrained=str(path),
        config_dirs=[MODEL_CONFIG_DIR],
        description=DEMO_TEACHER_DESCRIPTION,
    )


def with_default_model(model: ModelSettings) -> ModelSettings:
    """``model`` itself when it names an architecture, else the demo teacher.

    Settings given for an unnamed model (device, prices, even a checkpoint of the demo's
    architecture) are kept on top of the demo's values.
    """
    if model.name is not None:
        return model
    demo = demo_teacher()
    given = model.model_dump(exclude_unset=True)
    given["config_dirs"] = [*demo.config_dirs, *model.config_dirs]
    return demo.model_copy(update=given)
