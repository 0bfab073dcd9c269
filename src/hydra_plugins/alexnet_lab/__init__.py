"""conf/'s resolvers (alexnet_lab.config.RESOLVERS), registered when Hydra starts: Hydra imports every module
under hydra_plugins in each process that composes a config (its plugin discovery), so that ``compose()`` on
conf/ from a notebook or a test works with no call into the package, as with hydra-submitit-launcher's configs.
Hydra pickles its plugins' state into a job that submitit starts, whose unpickling imports this module again."""

from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

from alexnet_lab.config import RESOLVERS

for _name, _resolver in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver, use_cache=_name == "claim_dir")


class AlexNetLabResolvers(SearchPathPlugin):
    """A plugin Hydra knows by its class, so that its module is imported wherever Hydra's plugins are restored (a
    submitit job); it adds nothing to the search path."""

    def manipulate_search_path(self, search_path: object) -> None:
        pass
