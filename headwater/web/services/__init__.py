"""The query and command layer shared by the REST API, the UI pages and the CLI.

Each function takes a :class:`WebContext` (settings + store + registry, built once per app; the
CLI wraps its own store with ``WebContext.around``) and returns plain dataclasses, which the API
also uses as its response models; nothing here knows about HTTP. Errors are headwater's
``UserError`` / ``HeadwaterError`` with a hint (not-found errors end in ``NotFoundError``), which
the app turns into JSON (API) or a page (UI). Secrets are masked here, so every caller gets them
masked.

- :mod:`~headwater.web.services.dags`: ``list_dags``, ``list_import_errors``, ``get_dag``,
  ``get_source``, ``set_paused``, ``check_conf``, ``trigger``, ``get_record``, ``schedule_text``
- :mod:`~headwater.web.services.runs`: ``list_runs`` (paged, filtered), ``get_run``, ``run_info``
- :mod:`~headwater.web.services.tasks`: ``get_task_instance``, ``read_log`` (from an offset),
  ``confined_log_path``, ``clear``, ``mark``
- :mod:`~headwater.web.services.models`: ``list_models``, ``get_model``, ``get_version``, ``decide``
- :mod:`~headwater.web.services.streams`: ``overview``, ``list_apps``, ``get_topic``, ``get_group``,
  ``dead_letters``, ``newest_records``
- :mod:`~headwater.web.services.masking`: ``mask_mapping``, ``mask_urls``, ``Masker``
"""

from headwater.web.services.context import WebContext

__all__ = ["WebContext"]
