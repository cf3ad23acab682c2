module shoal.dev/gateway

go 1.19
