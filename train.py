"""Train ensemble members into the store: `python train.py -m method=random_lt seed='range(20)'`."""
import sys

import hydra
from omegaconf import DictConfig

from ticket_ensembles.config import register_configs
from ticket_ensembles.errors import UserError
from ticket_ensembles.run import check_environment, train

register_configs()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_environment()
    try:
        train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
