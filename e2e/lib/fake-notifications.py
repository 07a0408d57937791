#!/usr/bin/python3
# A stand-in for the desktop's notification daemon (org.freedesktop.Notifications) in the desktop
# end-to-end test's own D-Bus session. It logs every notification ("notification N: <summary>")
# and plays the person who clicks one: when the file named by FLIGHTDECK_E2E_CLICK exists, it
# invokes the default action of the newest notification that has one, once.
# Debian's python3 (with python3-dbus and python3-gi), not a virtualenv's.
import os
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

IFACE = "org.freedesktop.Notifications"


class Notifications(dbus.service.Object):
    def __init__(self, bus):
        super().__init__(bus, "/org/freedesktop/Notifications")
        self.next_id = 1
        self.clickable = None
        self.clicked = False

    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
        nid = self.next_id
        self.next_id += 1
        if "default" in [str(a) for a in actions]:
            self.clickable = nid
        print(f"notification {nid}: {summary}", flush=True)
        return nid

    @dbus.service.method(IFACE, out_signature="as")
    def GetCapabilities(self):
        return ["actions", "body"]

    @dbus.service.method(IFACE, out_signature="ssss")
    def GetServerInformation(self):
        return ("flightdeck-e2e", "flightdeck", "1", "1.2")

    @dbus.service.method(IFACE, in_signature="u")
    def CloseNotification(self, nid):
        self.NotificationClosed(nid, 3)

    @dbus.service.signal(IFACE, signature="us")
    def ActionInvoked(self, nid, key):
        pass

    @dbus.service.signal(IFACE, signature="uu")
    def NotificationClosed(self, nid, reason):
        pass

    def maybe_click(self):
        trigger = os.environ.get("FLIGHTDECK_E2E_CLICK")
        if not self.clicked and self.clickable and trigger and os.path.exists(trigger):
            self.clicked = True
            print(f"clicking notification {self.clickable}", flush=True)
            self.ActionInvoked(self.clickable, "default")
        return True


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    name = dbus.service.BusName(IFACE, bus)  # noqa: F841 (held for the process's life)
    daemon = Notifications(bus)
    # The person checks for the notification now and then (50 ms), as people do.
    GLib.timeout_add(50, daemon.maybe_click)
    print("fake notification daemon ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
