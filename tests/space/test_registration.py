"""`import autocnn` registers its Keras layers, without importing Keras itself."""

import subprocess
import sys

from conftest import backbone_model


def run_python(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=300)


def test_import_autocnn_leaves_keras_unimported():
    shown = run_python("import sys, autocnn; print('keras' in sys.modules, "
                       "'tensorflow' in sys.modules)")
    assert shown.stdout.split() == ["False", "False"], shown.stderr[-2000:]


def test_keras_loads_a_backbone_model_after_import_autocnn(tmp_path):
    model, _, _ = backbone_model()
    path = tmp_path / "backbone.keras"
    model.save(path)
    script = ("import sys, autocnn, keras; "
              "model = keras.saving.load_model(sys.argv[1]); "
              "print(type(model.get_layer('backbone_input')).__name__)")
    assert run_python(script, str(path)).stdout.split()[-1:] == ["BackboneInput"]
    # Keras imported first: `import autocnn` registers the layer at once.
    script = script.replace("import sys, autocnn, keras", "import sys, keras, autocnn")
    assert run_python(script, str(path)).stdout.split()[-1:] == ["BackboneInput"]
    # Without autocnn Keras cannot: the test above is not passing for some other reason.
    failed = run_python(script.replace(", autocnn", ""), str(path))
    assert failed.returncode != 0 and "BackboneInput" in failed.stderr
