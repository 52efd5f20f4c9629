"""TF Serving warm-up records without the ``tensorflow-serving-api`` package.

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` (a TFRecord file of
``tensorflow.serving.PredictionLog`` protos) when it loads a model. Only four
messages are involved, so they are encoded here with the protobuf wire format
(field numbers from ``tensorflow_serving/apis/*.proto``); the tensors themselves
are ``tensorflow.TensorProto``, which TensorFlow provides. ``tensorflow-serving-api``
would otherwise be needed, and it requires the ``tensorflow`` distribution by
name, which drags the GPU build in next to ``tensorflow-cpu``.

    PredictionLog { PredictLog predict_log = 6; }
    PredictLog    { PredictRequest request = 1; }
    PredictRequest{ ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; }
    ModelSpec     { string name = 1; string signature_name = 3; }
    map entry     { string key = 1; TensorProto value = 2; }
"""

_LENGTH_DELIMITED = 2


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """One length-delimited field (strings, bytes and sub-messages)."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def encode_prediction_log(model_name, signature_name, inputs):
    """Serialized ``PredictionLog`` holding one ``PredictRequest``.

    Args:
        model_name: TF Serving model name (``ModelSpec.name``).
        signature_name: the signature the request calls.
        inputs: ``{input name: numpy array}``; arrays of Python ``bytes`` objects
            become DT_STRING tensors.

    Returns:
        ``bytes``.
    """
    import tensorflow as tf

    spec = _field(1, model_name.encode()) + _field(3, signature_name.encode())
    request = _field(1, spec)
    for key in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[key]).SerializeToString()
        request += _field(2, _field(1, key.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


def _read_varint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint in a warm-up record")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data):
    """``[(field number, bytes)]`` of a message; only length-delimited fields are kept."""
    pos, out = 0, []
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _LENGTH_DELIMITED:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field in a warm-up record")
            out.append((number, data[pos:pos + size]))
            pos += size
        elif wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in a warm-up record")
    return out


def decode_prediction_log(data):
    """Inverse of :func:`encode_prediction_log`: ``(model_name, signature_name, inputs)``."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    model_name = signature = ""
    inputs = {}
    for n6, log in _fields(data):
        if n6 != 6:
            continue
        for n1, request in _fields(log):
            if n1 != 1:
                continue
            for number, value in _fields(request):
                if number == 1:
                    for f, text in _fields(value):
                        if f == 1:
                            model_name = text.decode()
                        elif f == 3:
                            signature = text.decode()
                elif number == 2:
                    entry = dict(_fields(value))
                    tensor = tensor_pb2.TensorProto.FromString(entry.get(2, b""))
                    inputs[entry.get(1, b"").decode()] = tf.make_ndarray(tensor)
    return model_name, signature, inputs
