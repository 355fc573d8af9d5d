"""NetJobs desktop controller: a Qt (PySide6 + qasync) front end over netjobs_core.

No protocol or scheduling logic lives here: the windows edit a config, then
drive `netjobs_core.check`, `netjobs_core.runner` and `netjobs_core.logs`.
"""
