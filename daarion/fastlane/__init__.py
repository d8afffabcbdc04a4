"""The fence around code that mirrors Django's and Ninja's internals to take work off the hot
paths: the trimmed ASGI handlers (handlers.py), the fast lane for the hottest routes
(lane.py), and the releases they were written against (versions.py). Nothing outside this
package reaches into those internals; daarion/asgi.py decides what runs.
"""

from daarion.fastlane.lane import FastRoute, register, respond, routes
from daarion.fastlane.versions import version_mismatches

__all__ = ["FastRoute", "register", "respond", "routes", "version_mismatches"]
