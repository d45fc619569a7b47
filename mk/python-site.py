# SPDX-License-Identifier: Apache-2.0
"""Where `make install` puts the Python helper for a PREFIX: the directory
under PREFIX that this python3 already searches (Debian and Ubuntu:
/usr/local/lib/python3.X/dist-packages for /usr/local,
/usr/lib/python3/dist-packages for /usr), otherwise PREFIX's own
lib/pythonX.Y/site-packages. Never a directory outside PREFIX.

usage: python3 mk/python-site.py PREFIX
"""
import os
import site
import sys
import sysconfig


def searched_under(prefix):
    dirs = [sysconfig.get_paths()["purelib"]]
    if hasattr(site, "getsitepackages"):  # absent in old virtualenvs
        dirs += site.getsitepackages()
    for d in dirs:
        if os.path.relpath(d, prefix).split(os.sep)[0] == "lib":
            return d
    return None


def main():
    prefix = os.path.normpath(os.path.abspath(sys.argv[1]))
    d = searched_under(prefix) or sysconfig.get_path(
        "purelib", "posix_prefix", {"base": prefix, "platbase": prefix})
    print(d)


if __name__ == "__main__":
    main()
