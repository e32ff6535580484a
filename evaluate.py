"""Evaluate every ensemble in the member store: `python evaluate.py task=mrpc model=bert_base_uncased`.

Reads only the store (paths.store_dir), never a model; writes reports/<task>/<model>/.
"""
import hydra
from omegaconf import DictConfig

from ticket_ensembles.cli import run_cli, user_errors_exit
from ticket_ensembles.config import register_configs
from ticket_ensembles.evaluation import evaluate
from ticket_ensembles.known_keys import check_known_keys

register_configs()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors_exit():
        check_known_keys(cfg)  # a swept +key=a,b reaches only the jobs (the known_keys callback checks the rest)
        evaluate(cfg)


if __name__ == "__main__":
    run_cli(main)  # config errors: one line, exit 2
