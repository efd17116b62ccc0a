"""The VM stage: accelerator probe, virtme-ng launch, SSH into the guest, console watch, disks."""
