// Command bootagent stands in for the guest agent in the image boot test:
// as /init it loads the initramfs modules, reports on the console what the
// kernel loaded, and powers the VM off.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/internal/kmod"
)

func main() {
	start := time.Now()
	err := kmod.LoadList(context.Background(), "/", "/etc/scc/modules")
	if err != nil {
		fmt.Printf("SCC-BOOTAGENT modules-error: %v\n", err)
	} else {
		fmt.Printf("SCC-BOOTAGENT modules-ok in %v\n", time.Since(start).Round(time.Millisecond))
	}
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		fmt.Printf("SCC-BOOTAGENT mount-proc-error: %v\n", err)
	}
	if data, err := os.ReadFile("/proc/modules"); err == nil {
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				names = append(names, f[0])
			}
		}
		fmt.Printf("SCC-BOOTAGENT loaded: %s\n", strings.Join(names, " "))
	}
	fmt.Println("SCC-BOOTAGENT done")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("SCC-BOOTAGENT poweroff: %v\n", err)
	}
	// PID 1 exiting panics the kernel; with panic=-1 and -no-reboot QEMU
	// then exits too.
}
