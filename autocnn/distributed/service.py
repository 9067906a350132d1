"""The chief's gRPC server: keras-tuner's OracleServicer (its CreateTrial through the chief, which
can refuse) and autocnn's Beat beside it on the same port."""

import json
import logging
import time

from autocnn.control import trial_label
from autocnn.distributed.protocol import SERVICE, Address, encode
from autocnn.errors import DistributedError

log = logging.getLogger(__name__)


def start(chief, address: Address):
    """The started server for ``chief`` and the address it listens on (its port chosen when
    it was 0)."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos

    # No SO_REUSEPORT: a second chief on a port in use must fail, not share the workers.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.so_reuseport", 0)])
    protos.get_service_grpc().add_OracleServicer_to_server(_servicer(chief), server)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "Beat": grpc.unary_unary_rpc_method_handler(
            chief.beat, request_deserializer=json.loads, response_serializer=encode)})])
    try:
        port = server.add_insecure_port(str(address))
    except RuntimeError:
        port = 0
    if not port:
        raise DistributedError(
            f"cannot listen on {address}: the port is in use or the address is not this "
            "machine's; choose another --oracle-address")
    server.start()
    return server, Address(address.host, port)


def _servicer(chief):
    """keras-tuner's OracleServicer, with CreateTrial going through ``chief.create_trial``."""
    from keras_tuner.src.distribute.oracle_chief import OracleServicer


    class Servicer(OracleServicer):
        def CreateTrial(self, request, context):
            from keras_tuner.src import protos

            trial = chief.create_trial(request.tuner_id,
                                       lambda: self.oracle.create_trial(request.tuner_id))
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

        def EndTrial(self, request, context):
            response = super().EndTrial(request, context)
            # keras-tuner saves the oracle before it forgets the trial as running; a tuner
            # saves it again after, which a chief never does: without this a restarted chief
            # would run the trial again.
            _save(self.oracle)
            chief.trial_ended()
            return response

    return Servicer(chief.oracle)


def _save(oracle) -> None:
    from keras_tuner.src.engine.oracle import synchronized

    synchronized(type(oracle).save)(oracle)


def create_trial(chief, tuner_id: str, hand_out):
    """What ``chief`` answers a worker's CreateTrial: a trial keras-tuner's ``hand_out`` gives,
    or STOPPED once the search ends."""
    from keras_tuner.src.engine import trial as trial_module

    if chief.stopping:
        chief.told_to_stop.add(tuner_id)
        chief.oracle.tuner_ids.discard(tuner_id)
        return trial_module.Trial(chief.oracle.get_space(),
                                  status=trial_module.TrialStatus.STOPPED)
    trial = hand_out()
    if trial.status == trial_module.TrialStatus.IDLE:
        # Hyperband waits for a round's trials: keras-tuner's workers ask again at once,
        # so answer after a pause rather than spin.
        time.sleep(chief.idle_pause)
    elif trial.status == trial_module.TrialStatus.STOPPED:  # its trials or space ran out
        chief.servicer_stopped = True
        chief.told_to_stop.add(tuner_id)
    elif trial.status == trial_module.TrialStatus.RUNNING:
        if chief.roster.handed_out(trial.trial_id, tuner_id):
            log.info(f"trial {trial_label(int(trial.trial_id) + 1, chief.total_trials)} "
                     f"started on {tuner_id}")
    return trial
