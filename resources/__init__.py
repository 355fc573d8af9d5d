"""NetJobs' data files, installed as the package `netjobs_resources`.

The programs read them with importlib.resources (`files("netjobs_resources.examples")`),
which works the same from a checkout, an installed wheel and a PyInstaller executable.
"""
