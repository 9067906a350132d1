"""`tf.data` input pipelines: parallel decoding, optional cache, shuffling, batching, prefetch."""

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 10_000  # decoded images held for shuffling when a folder is cached


def batches(split, input_shape, batch_size: int, *, shuffle: bool = False, seed: int = 0,
            cache: bool = False) -> tf.data.Dataset:
    """(images, labels) batches: float32 images in [0, 1] of ``input_shape``, int64 labels."""
    if split.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        if shuffle:
            ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    else:
        ds = tf.data.Dataset.from_tensor_slices((list(split.paths), split.labels))
        decode = _decoder(input_shape)
        if cache:
            # Decode once and keep uint8 (4x smaller than float32). Files are listed class by
            # class, so fix one random order before caching; a bounded buffer then reshuffles
            # each epoch on top of it.
            if shuffle:
                ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=False)
            ds = ds.map(decode, num_parallel_calls=AUTOTUNE).cache()
            if shuffle:
                ds = ds.shuffle(min(len(split), SHUFFLE_BUFFER), seed=seed,
                                reshuffle_each_iteration=True)
        else:
            # Shuffle the file names (cheap), then decode: memory stays flat however large.
            if shuffle:
                ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
            ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
    # Scaling a whole batch at once is cheaper than image by image.
    return ds.batch(batch_size).map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _to_float(images, labels):
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    return images, labels


def _decoder(input_shape):
    height, width, channels = input_shape

    def decode(path, label):
        raw = tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.uint8,
                                 expand_animations=False)  # GIF: the first frame
        image = to_channels(raw, channels)
        same = tf.reduce_all(tf.shape(image)[:2] == (height, width))
        image = tf.cond(same, lambda: image, lambda: _resize(image, (height, width)))
        image.set_shape((height, width, channels))
        return image, label

    return decode


def _resize(image, size):
    resized = tf.image.resize(image, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def to_channels(image, channels: int):
    """Grayscale, grayscale + alpha, RGB or RGBA to ``channels`` (1 or 3); alpha is dropped."""
    have = tf.shape(image)[-1]
    gray = image[..., :1]
    rgb = tf.cond(have >= 3, lambda: image[..., :3], lambda: tf.repeat(gray, 3, axis=-1))
    if channels == 3:
        return rgb
    return tf.cond(have >= 3, lambda: tf.image.rgb_to_grayscale(rgb), lambda: gray)


def fit_arrays(images: np.ndarray, image_size, channels) -> np.ndarray:
    """In-memory images converted to ``channels`` and resized to ``image_size`` (when given)."""
    if channels is not None and images.shape[-1] != channels:
        converted = to_channels(tf.convert_to_tensor(images), channels)
        images = converted.numpy().astype(images.dtype)
    if image_size is not None and tuple(images.shape[1:3]) != tuple(image_size):
        out = []
        for start in range(0, len(images), 4096):
            chunk = tf.image.resize(images[start:start + 4096], image_size, antialias=True)
            out.append(chunk.numpy())
        resized = np.concatenate(out)
        if images.dtype == np.uint8:
            resized = np.clip(np.round(resized), 0, 255)
        images = resized.astype(images.dtype)
    return images
