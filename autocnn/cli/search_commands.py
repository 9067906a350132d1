"""The search commands: `autocnn search` (alone or as a distributed search's chief) and
`autocnn worker`. Their defaults are SearchConfig's (see options.setting)."""

import socket

import click

from autocnn.cli.options import (
    DATA_KEYS,
    DATASET_HELP,
    WEIGHTS_HELP,
    Duration,
    data_options,
    make_data_config,
    make_rules,
    quiet_tensorflow,
    setting,
    space_options,
    tracking_option,
    verbose_option,
)
from autocnn.config import (
    CHAMPION_METRICS,
    CLASS_WEIGHTS,
    DEFAULT_MAX_TRIALS,
    DISTRIBUTED,
    FINAL_DATA,
    IMBALANCE,
    PRECISIONS,
    STRATEGIES,
    TUNERS,
    DataConfig,
    SearchConfig,
)


@click.command()
@click.option("--dataset", default=DataConfig.dataset, show_default=True, help=DATASET_HELP)
@data_options
@setting("--tuner", type=click.Choice(TUNERS),
         help="auto: short trials first, the best third of each rung continued to three "
              "times the epochs (ASHA), new configurations mostly neighbours of the best; "
              "random, bayesian, hyperband: keras-tuner's own.")
@setting("--max-trials", type=click.IntRange(min=1), show_default=False,
         help="Most trials to run; architectures rejected by sizing count as trials "
              f"[default: {DEFAULT_MAX_TRIALS}; with --time-budget, no limit: the budget "
              "decides].")
@setting("--epochs", type=click.IntRange(min=1),
         help="Most epochs per trial (Hyperband's max_epochs).")
@setting("--patience", type=click.IntRange(min=1),
         help="Stop a trial after this many epochs without a better val_accuracy.")
@setting("--trial-fraction", type=click.FloatRange(0, 1, min_open=True), metavar="FRACTION",
         help="Train each trial on this share of the training images (stratified, the "
              "same for every trial): cheaper trials, more of them in a budget. The best "
              "configurations then train on all of them (--finalists, --final-data).")
@setting("--finalists", type=click.IntRange(1), metavar="N",
         help="With --trial-fraction and --final-data train: how many of the best "
              "configurations train on all the training images at the end. A small share "
              "ranks configurations roughly (one that needs more data to shine ranks "
              "low), so the best few get the full "
              "data; the one with the best validation accuracy is the result. Each counts "
              "against --time-budget; those it cannot afford are skipped.")
@setting("--final-data", type=click.Choice(FINAL_DATA),
         help="With --trial-fraction: what the last rung trains on. train: each finalist on "
              "the training images, validation choosing its epoch and the winner; "
              "train+val: the best trial alone on the training and validation images, its "
              "learning rate falling on a cosine to its last epoch, which is kept (25% more "
              "images: +0.45 points for VGG-13 on Fashion-MNIST); auto: train+val with "
              "--time-budget (which plans the epochs), train without.")
@setting("--class-weight", type=click.Choice(CLASS_WEIGHTS),
         help="How much each class's images weigh in the loss. balanced: the inverse of "
              "the class's share, so each class weighs the same in total; auto: balanced "
              f"when the largest class has more than {IMBALANCE:g} times the images of the "
              "smallest; none: every image alike.")
@setting("--seed", type=int,
         help="Fixes the split, the tuner's choices and the weight initialisation.")
@setting("--max-failed-trials", type=click.IntRange(min=1),
         help="Give up after this many failed trials in a row.")
@setting("--max-params", type=click.IntRange(min=1), show_default=False,
         help="Reject architectures with more parameters, before building them "
              "[default: no limit].")
@setting("--time-budget", type=Duration(), show_default=False,
         help="Wall-clock limit for the search, retraining and evaluation: 90s, 45m, 2h, "
              "1h30m. No trial starts that would not end in time; the running one stops "
              "at the budget with its best epoch kept [default: none].")
@setting("--isolate", is_flag=True, show_default=False,
         help="Run each trial in a fresh process: no memory builds up, and a trial that "
              "crashes its process fails alone (a few seconds more per trial).")
@setting("--deterministic", is_flag=True, show_default=False,
         help="Enable TensorFlow's op determinism, so a GPU gives the same numbers for the "
              "same --seed (slower on a GPU; CPU runs are reproducible without it).")
@setting("--distributed", type=click.Choice(DISTRIBUTED),
         help="chief: serve the search's oracle to workers (`autocnn worker`) that run the "
              "trials; this process then retrains and evaluates the best.")
@setting("--oracle-address", metavar="HOST:PORT", show_default=False,
         help="Where the chief listens [default: 127.0.0.1 on a free port]; 0.0.0.0:PORT "
              "for other machines.")
@setting("--workers", type=click.IntRange(min=0),
         help="Start this many local worker processes (one GPU each when there are); "
              "implies --distributed chief.")
@setting("--worker-timeout", type=Duration(),
         help="A worker silent this long has its trial handed to another worker; workers "
              "wait this long for a chief that stopped answering (restart it in that time).")
@setting("--strategy", type=click.Choice(STRATEGIES),
         help="mirrored: train each trial on all visible GPUs (tf.distribute."
              "MirroredStrategy); the batch size searched is per GPU.")
@setting("--precision", type=click.Choice(PRECISIONS),
         help="Keras's dtype policy. auto: mixed_float16 on GPUs with Tensor Cores "
              "(compute capability 7.0+), float32 elsewhere; mixed_bfloat16 suits TPUs "
              "and recent GPUs.")
@space_options
@setting("--weights", metavar="imagenet|none|PATH",
         help=WEIGHTS_HELP)
@setting("--project", show_default=False, help="Tuner project and MLflow experiment name "
         "[default: autocnn-DATASET]. Rerunning the same project resumes it.")
@setting("--tuner-dir", type=click.Path(file_okay=False),
         help="Where keras-tuner keeps its trials.")
@setting("--overwrite", is_flag=True, show_default=False,
         help="Start the project afresh instead of resuming.")
@tracking_option()
@setting("--model-name", show_default=False, help="Registered model name [default: the project].")
@setting("--champion-metric", type=click.Choice(CHAMPION_METRICS),
         help="Test metric that decides whether a new model becomes the 'champion' alias.")
@click.option("--no-retrain", is_flag=True, help="Keep the best trial's own model (trained on "
              "train, or its --trial-fraction share, at its best epoch) instead of retraining "
              "it (on train + val; with --trial-fraction, the last rung of --final-data).")
@click.option("--no-evaluate", is_flag=True, help="Skip the test-split evaluation (and so the "
              "registration, which needs its score).")
@click.option("--no-register", is_flag=True, help="Evaluate the best model but do not "
              "register it in the MLflow model registry.")
@click.option("--no-explain", is_flag=True, help="Skip the figures of what the model learned "
              "(where it looked for each class, its surest mistakes: explain/ in MLflow).")
@verbose_option
def search(no_retrain, no_evaluate, no_register, no_explain, space_file, sets, backbone,
           **options):
    """Search for a CNN, retrain the best, evaluate it on the test split, register it.

    \b
    Examples:
      autocnn search --dataset digits --tuner bayesian --max-trials 20 --epochs 30
      autocnn search --dataset ~/pictures/pets/ --backbone mobilenet_v2,efficientnet_b0
    """
    data_config = make_data_config(**options)
    settings = {k: v for k, v in options.items() if k not in DATA_KEYS}
    from autocnn.space.presets import preset, split_space

    _, preset_name = split_space(space_file)
    if preset_name:
        preset(preset_name, (32, 32, 1))  # an unknown name fails now, before the data loads
        settings.update(tuner="random", max_trials=1)  # one fixed configuration: one trial
    config = SearchConfig(data=data_config, retrain=not no_retrain, evaluate=not no_evaluate,
                          register=not (no_register or no_evaluate), preset=preset_name,
                          explain=not (no_explain or no_evaluate),
                          space=make_rules(space_file, sets, backbone), **settings)
    quiet_tensorflow()
    from autocnn import data as data_module

    dataset = data_module.load(data_config)  # bad data fails before the search
    from autocnn.cli.summaries import format_summary
    from autocnn.search.run import run_search

    result = run_search(config, dataset=dataset)
    click.echo(format_summary(result, config))
    return {"model": result.registration.model_uri if result.registration else None,
            "run_id": result.run_id, "tracking_uri": config.tracking_uri}


@click.command()
@click.option("--oracle-address", required=True, metavar="HOST:PORT",
              help="The chief's address, as `autocnn search --distributed chief` printed it.")
@click.option("--worker-id", default=socket.gethostname(), show_default="this machine's name",
              help="Unique per worker; restarted with the same id, a worker takes its trial "
                   "back.")
@click.option("--connect-timeout", type=Duration(), default="30s", show_default=True,
              help="How long to wait for the chief to answer.")
@click.option("--tuner-dir", type=click.Path(file_okay=False), default=None,
              help="Where the chief's tuner folder is mounted here [default: the chief's path].")
@tracking_option(default=None, help="The MLflow store to log trials to [default: the one the "
                 "chief gives].")
@verbose_option
def worker(oracle_address, worker_id, connect_timeout, tuner_dir, tracking_uri, verbose):
    """Run trials for a distributed search until its chief ends it.

    The chief gives the search (data, space, MLflow run); the worker needs the tuner folder at
    the same path (a shared file system) or --tuner-dir. Finished trials stay with the chief:
    a worker can be stopped at any time.

    \b
    Examples:
      autocnn search --dataset digits --distributed chief --oracle-address 0.0.0.0:8000
      autocnn worker --oracle-address chief-host:8000 --worker-id gpu-box-1
    """
    from autocnn.distributed.protocol import Address
    from autocnn.distributed.worker import join

    link = join(Address.parse(oracle_address), worker_id, connect_timeout, tuner_dir,
                tracking_uri)
    quiet_tensorflow()
    from autocnn.search.workers import run_worker

    run_worker(link, verbose=verbose)
