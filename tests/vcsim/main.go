// vcsim for vmbackup's tests: VMware's vCenter simulator (govmomi's simulator package, from
// Debian's golang-github-vmware-govmomi-dev, which ships the library but no command).
//
// It serves one datacenter "DC0" with one host, one datastore "LocalDS_0" and -vms powered-off
// VMs (DC0_H0_VM0, ...), each with one disk of -disk-mib, over HTTPS with the certificate given (or Go's test certificate), and
// writes what a test needs to -info as JSON: the SDK URL, the process id, and each datastore's
// local folder. The password is read from a file so that it is not on a command line.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free one)")
	certFile := flag.String("cert", "", "PEM certificate of the HTTPS server")
	keyFile := flag.String("key", "", "PEM private key of -cert")
	vms := flag.Int("vms", 2, "VMs on the host")
	diskMiB := flag.Int64("disk-mib", 0, "capacity of every VM's disk in MiB (0: vcsim's 1 MiB)")
	user := flag.String("user", "user", "the user name Login accepts")
	passwordFile := flag.String("password-file", "", "file holding the password Login accepts")
	info := flag.String("info", "", "file to write the URL, pid and datastore folders to (JSON)")
	flag.Parse()

	password := "pass"
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			log.Fatal(err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}

	m := simulator.VPX()
	m.Datacenter, m.Cluster, m.ClusterHost, m.Host = 1, 0, 0, 1
	m.Machine, m.Datastore, m.Autostart = *vms, 1, false
	if err := m.Create(); err != nil {
		log.Fatal(err)
	}
	defer m.Remove()
	if *diskMiB > 0 {
		// The tests plant real VMDKs of this size where vcsim keeps empty files.
		for _, e := range simulator.Map.All("VirtualMachine") {
			vm := e.(*simulator.VirtualMachine)
			for _, d := range vm.Config.Hardware.Device {
				if disk, ok := d.(*types.VirtualDisk); ok {
					disk.CapacityInKB = *diskMiB * 1024
					disk.CapacityInBytes = *diskMiB << 20
				}
			}
		}
	}

	m.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, password)}
	m.Service.TLS = new(tls.Config)
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		m.Service.TLS.Certificates = []tls.Certificate{cert}
	}
	server := m.Service.NewServer()
	defer server.Close()

	sdk := *server.URL
	sdk.User = nil
	out := map[string]interface{}{"url": sdk.String(), "pid": os.Getpid()}
	folders := map[string]string{}
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		folders[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	out["datastores"] = folders
	text, _ := json.MarshalIndent(out, "", "  ")
	if *info != "" {
		tmp := *info + ".tmp"
		if err := os.WriteFile(tmp, text, 0600); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *info); err != nil {
			log.Fatal(err)
		}
	} else {
		os.Stdout.Write(append(text, '\n'))
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
