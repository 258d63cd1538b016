"""The DEX apparent-age model (Rothe et al.), Keras 3 functional, on the trunk of the
variant's family (model.families; VGG-Face transfer for the VGG family):

    image (uint8 [any H, any W, 3]) -> resize (registered Resize: to input_size x
    input_size, an identity when it already is) -> preprocess (registered Preprocess: float,
    the family's mean and scale) -> the family's trunk up to its feature layer (VGG:
    conv1_1 .. pool5, frozen) -> its neck (VGG: fc6 -> drop6 -> fc7 -> drop7)
    -> predictions Conv2D(num_classes, 1x1) -> flatten -> age (softmax, float32)
    [gender=True: the neck -> gender_predictions Conv2D(2, 1x1) -> gender_flatten
     -> gender (softmax, float32)]

fc8 of VGG-Face is removed; by default every layer up to and including pool5 is
frozen (the original froze ``model.layers[:-7]``), fc6 and fc7 stay trainable;
`trainable_from` (one of the family's depths) names the first layer that trains instead.
Full variant parameter counts (checked facts, asserted by tests): trainable
fc6 102,764,544 + fc7 16,781,312 + predictions 413,797 = 119,959,653;
non-trainable (13 convolutions) 14,714,688.  gender=True adds 8,194 trainable.
"""
from __future__ import annotations

import keras

from records.schema import NUM_AGES

from .families import FAMILIES, family_of, resolve_input_size
from .family import Family
from .layers import FullyConnectedConv2D, Preprocess, Resize

FULL_TRAINABLE_PARAMS = 119_959_653
FULL_NON_TRAINABLE_PARAMS = 14_714_688
AGE_LAYER_NAMES = ("predictions", "flatten", "age")
GENDER_LAYER_NAMES = ("gender_predictions", "gender_flatten", "gender")
# The layers whose shape follows the number of classes: carried from another model
# only when their shapes match (model.transfer).
HEAD_OUTPUT_LAYERS = ("predictions", "gender_predictions")


def set_trainable_from(model: keras.Model, first: str, family: Family) -> None:
    """Freeze every layer before `first` (one of the family's depths), train it and all after."""
    if first not in family.trainable_from:
        raise ValueError(f"unknown trainable_from {first!r} for the {family.name} family; "
                         f"expected one of {family.trainable_from}")
    trainable = first == "all"
    for layer in model.layers[1:]:          # after the input
        trainable = trainable or layer.name == first
        layer.trainable = trainable


def _age_head(x, num_classes):
    x = FullyConnectedConv2D(num_classes, 1, name="predictions")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.layers.Activation("softmax", dtype="float32", name="age")(x)


def _gender_head(x):
    x = FullyConnectedConv2D(2, 1, name="gender_predictions")(x)
    x = keras.layers.Flatten(name="gender_flatten")(x)
    return keras.layers.Activation("softmax", dtype="float32", name="gender")(x)


def build_age_model(weights=None, *, num_classes=NUM_AGES, gender=False, variant="full",
                    input_size=None, dropout=0.5, trainable_from=None) -> keras.Model:
    """Build the DEX age model.

    weights: None (random init) or the path of a weights file of the family's trunk
      (VGG: vgg_face_weights.h5, Keras 2 layout; conv1_1..fc7 are loaded, the file's fc8
      is skipped), loaded by the family's loader.
    Returns a functional model taking uint8 face crops [H, W, 3] of any size (one
    size per batch), resized inside to input_size (default: the variant's, e.g. 224 full /
    32 tiny).  Output: the age probabilities [B, num_classes]
    (final layer `age`), or with gender=True the dict
    {"age": [B, num_classes], "gender": [B, 2]}.  Softmax outputs are float32
    under any mixed precision policy.  Layers before `trainable_from` (default: the
    family's first depth, the trunk frozen) are frozen.
    """
    family = family_of(variant)
    spec = family.spec(variant)
    size = resolve_input_size(variant, input_size)
    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = Resize(size, name="resize")(inputs)
    x = Preprocess(family.mean, family.scale, name="preprocess")(x)
    x = family.builder_fn()(x, spec, dropout)
    age = _age_head(x, num_classes)
    outputs = {"age": age, "gender": _gender_head(x)} if gender else age
    name = f"dex_age{'_gender' if gender else ''}_{variant}"
    model = keras.Model(inputs, outputs, name=name)
    set_trainable_from(model, trainable_from or family.trainable_from[0], family)
    if weights is not None:
        family.weights_loader_fn()(model, weights, spec)
    return model


def _has_gender(age_model):
    return any(layer.name == "gender" for layer in age_model.layers)


def model_family(age_model) -> Family:
    """The family an age model (built or loaded) belongs to: the one whose feature layer
    and neck it has."""
    names = {layer.name for layer in age_model.layers}
    for family in FAMILIES.values():
        if family.feature_layer in names and set(family.neck) <= names:
            return family
    raise ValueError(f"model {age_model.name!r} has no registered family's feature layer "
                     f"({', '.join(f.feature_layer for f in FAMILIES.values())})")


def feature_layer(age_model) -> keras.layers.Layer:
    """The layer whose output the feature cache stores (VGG: pool5)."""
    return age_model.get_layer(model_family(age_model).feature_layer)


def feature_extractor(age_model) -> keras.Model:
    """uint8 image -> the trunk's features (VGG: pool5), sharing layers and weights with `age_model`."""
    return keras.Model(age_model.inputs[0], feature_layer(age_model).output,
                       name=f"{age_model.name}_features")


def head(age_model) -> keras.Model:
    """Feature-shaped float32 input -> the age model's outputs (same structure:
    tensor, or dict with "age" and "gender"), reusing the neck (VGG: fc6, fc7),
    predictions (and the gender head) of `age_model`: training the head trains the age
    model. Inputs of another float dtype (e.g. float16 cached features) are cast."""
    family = model_family(age_model)
    cut = age_model.get_layer(family.feature_layer).output
    features = keras.Input(tuple(cut.shape[1:]), dtype="float32", name=f"{family.feature_layer}_features")
    x = features
    for name in family.neck:
        x = age_model.get_layer(name)(x)
    age = features_out = x
    for name in AGE_LAYER_NAMES:
        age = age_model.get_layer(name)(age)
    outputs = age
    if _has_gender(age_model):
        g = features_out
        for name in GENDER_LAYER_NAMES:
            g = age_model.get_layer(name)(g)
        outputs = {"age": age, "gender": g}
    return keras.Model(features, outputs, name=f"{age_model.name}_head")
